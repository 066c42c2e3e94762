"""CPU set-up that has to happen before JAX starts its backends: devices and XLA:CPU flags.

`configure_cpu(devices, tuning)`: `devices` splits the CPU into that many JAX devices (one per
core, so the data-parallel step keeps every core busy; also a way to simulate devices), and
`tuning` appends CPU_TUNING_XLA_FLAGS to XLA_FLAGS. What the flags gained, on which machine, and
the environment variables worth setting beside them: docs/performance.md.
"""

from __future__ import annotations

import os

import jax

from mmix_jax.errors import HostSetupError

# Each device single-threaded (one device per core does the parallelism); YNNPACK for
# reductions and elementwise fusions, not for convolutions (docs/performance.md).
CPU_TUNING_XLA_FLAGS = (
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_ELTWISE",
)


def _flag_name(flag: str) -> str:
    return flag.split("=", 1)[0]


def _backends_started() -> bool:
    """Whether JAX has started its backends (public API only: changing the CPU device count
    is refused once they have; the count is put back right away otherwise)."""
    current = jax.config.jax_num_cpu_devices
    try:
        jax.config.update("jax_num_cpu_devices", current + 1 if current > 0 else 1)
    except RuntimeError:
        return True
    jax.config.update("jax_num_cpu_devices", current)
    return False


def configure_cpu(devices: int = 0, tuning: bool = False) -> None:
    """Splits the CPU into `devices` JAX devices (0: JAX's default) and with `tuning` appends
    CPU_TUNING_XLA_FLAGS to XLA_FLAGS, except flags that XLA_FLAGS already sets (to any value:
    the user's choice stays). Call it right after `import jax`, before any computation.
    """
    if devices < 0:
        raise ValueError(f"cpu devices = {devices} is invalid: use 0 (JAX's default) or a "
                         "positive count, e.g. the number of cores.")
    if not devices and not tuning:
        return
    if _backends_started():
        raise HostSetupError(
            "the CPU set-up (cpu devices / cpu tuning) must come before the first JAX "
            "computation; call mmix_jax.harness.host.configure_cpu right after `import jax`.")
    if devices:
        jax.config.update("jax_num_cpu_devices", devices)
    if tuning:
        present = os.environ.get("XLA_FLAGS", "").split()
        named = {_flag_name(flag) for flag in present}  # a value the user set wins over ours
        missing = [flag for flag in CPU_TUNING_XLA_FLAGS if _flag_name(flag) not in named]
        os.environ["XLA_FLAGS"] = " ".join(present + missing)


__all__ = ["CPU_TUNING_XLA_FLAGS", "configure_cpu"]
