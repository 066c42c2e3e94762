"""CPU host set-up that has to happen before JAX starts its backends.

Measured on a 2-core AVX-512 host (jax 0.10.2, batch 128; README "Performance"): XLA:CPU's
default YNNPACK convolutions were about 2× slower than its Eigen ones (PreActResNet18's first
3×3 conv, forward + both gradients: 517 vs 228 ms), and an Eigen convolution on two threads was
no faster than on one (68 vs 64 ms). So the host is split into one JAX device per core, the
data-parallel `shard_map` step keeps every core busy, and the flags below keep each device
single-threaded with its convolutions on Eigen. Most of the gain is the Eigen path: the
step pinned to one core ran 64 images in 2.76 s, and two devices ran 128 in 2.9–3.1 s (1.9×
the throughput of one core). Even one "single-threaded" device kept both cores of that host
busy (CPU time / wall time 1.9; only Eigen's own threading is off), so it was within 10 % of
two devices there; on hosts with more cores, the split helps more.
On a second, faster 2-core host (Zen 5), YNNPACK's elementwise fusions (now in the flags below)
made the one-core step 7–9 % faster and the two-device step 2–7 %; see CPU_TUNING_XLA_FLAGS.
Nothing here is applied unless asked for: the flags are host specific, so measure on your host
with `scripts/benchmark.py`.

One more setting lives outside the process: XLA:CPU takes its per-step buffers from glibc
malloc, which maps large ones fresh from the kernel each step and frees them back, so every step
first-touches them page by page (about 250,000 page faults per step of PreActResNet18, batch
128, on that host). `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc >= 2.35, transparent huge
pages in `madvise` or `always` mode) backs them with 2 MiB pages: the faults per step fell to
near zero and the step got 8–10 % faster there. glibc reads it only when the process starts, so it
has to be in the environment of the command; with --cpu_tuning and without it a warning says so.
A preloaded tcmalloc or jemalloc (LD_PRELOAD) keeps freed buffers for the next step instead:
on the Zen 5 host the two-device step took 1.17–1.25 s with them against 1.25–1.31 s with glibc
and huge pages (PyTorch's eager step gains as much from them).
"""

from __future__ import annotations

import os
import platform
from typing import Mapping

import jax
from absl import logging

# Each device single-threaded (one device per core does the parallelism); YNNPACK for reductions
# and elementwise fusions, not for convolutions (2× slower on the first host measured). The
# elementwise fusions matter for the backward pass: without them XLA fuses each batch-norm + ReLU
# recompute into the batch-minor transpose that feeds a weight gradient and evaluates it in the
# transposed (strided) order, 12–20 ms per 32×32×64 activation at batch 64 instead of about 5.
CPU_TUNING_XLA_FLAGS = (
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_ELTWISE",
)


def _flag_name(flag: str) -> str:
    return flag.split("=", 1)[0]


# The glibc malloc tunable that backs large allocations with transparent huge pages.
MALLOC_HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def malloc_uses_huge_pages(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether GLIBC_TUNABLES (read by glibc at process start) asks malloc for huge pages."""
    return MALLOC_HUGE_PAGES_TUNABLE in environ.get("GLIBC_TUNABLES", "").split(":")


# Allocators that replace glibc malloc when preloaded; they keep freed memory for reuse, so
# GLIBC_TUNABLES means nothing to them and the step needs no hint.
REPLACEMENT_ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")


def preloaded_allocator(environ: Mapping[str, str] = os.environ) -> str | None:
    """The replacement malloc named in LD_PRELOAD (e.g. "tcmalloc"), or None."""
    for library in environ.get("LD_PRELOAD", "").replace(":", " ").split():
        name = os.path.basename(library)
        for allocator in REPLACEMENT_ALLOCATORS:
            if name.startswith(f"lib{allocator}"):
                return allocator
    return None


def malloc_hint(environ: Mapping[str, str] = os.environ) -> str | None:
    """A one-line hint where glibc malloc would serve the step faster with huge pages; None
    where it already does, where another allocator is preloaded, or where the C library is not
    glibc (the tunable would do nothing)."""
    if (platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
            or malloc_uses_huge_pages(environ) or preloaded_allocator(environ)):
        return None
    present = environ.get("GLIBC_TUNABLES", "")
    value = f"{present}:{MALLOC_HUGE_PAGES_TUNABLE}" if present else MALLOC_HUGE_PAGES_TUNABLE
    return (f"glibc malloc hands XLA:CPU fresh 4 KiB pages every step; start the command with "
            f"GLIBC_TUNABLES={value} in its environment for huge pages (steps 8-10 % and 25 % "
            "shorter, measured on two 2-core hosts), or preload tcmalloc or jemalloc "
            "(LD_PRELOAD; a few % faster still; README \"Performance\").")


class HostSetupError(RuntimeError):
    """The CPU set-up was asked for after JAX had already started its backends."""


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
    from jax._src import xla_bridge  # the only way to ask whether backends have started

    if xla_bridge.backends_are_initialized():
        raise HostSetupError(
            "the CPU set-up (cpu devices / cpu tuning) must come before the first JAX "
            "computation; call mmix_jax.host.configure_cpu right after `import jax`.")
    if devices:
        jax.config.update("jax_num_cpu_devices", devices)
    if tuning:
        hint = malloc_hint()
        if hint:
            logging.warning(hint)
        present = os.environ.get("XLA_FLAGS", "").split()
        named = {_flag_name(flag) for flag in present}  # a value the user set wins over ours
        missing = [flag for flag in CPU_TUNING_XLA_FLAGS if _flag_name(flag) not in named]
        os.environ["XLA_FLAGS"] = " ".join(present + missing)


__all__ = ["CPU_TUNING_XLA_FLAGS", "HostSetupError", "MALLOC_HUGE_PAGES_TUNABLE",
           "REPLACEMENT_ALLOCATORS", "configure_cpu", "malloc_hint", "malloc_uses_huge_pages",
           "preloaded_allocator"]
