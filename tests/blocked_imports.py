"""Run Python code in a fresh process where the `[train]` extra's packages cannot be imported,
as on an install without the extra (or the GPU machine's image, which has none of them)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# What `pip install mmix_jax` (no extra) leaves out, as top-level module names. orbax comes
# with flax, but the library must not import it either.
HARNESS_MODULES = ("ml_collections", "grain", "array_record", "clu", "tensorflow",
                   "tensorflow_datasets", "tensorboard", "matplotlib", "PIL", "orbax")

_PRELUDE = f"""
import atexit, importlib.abc, sys
BLOCKED = {HARNESS_MODULES!r}
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
# Printed at exit (sys.exit included): the blocked modules imported anyway (none, unless the
# blocker failed).
atexit.register(lambda: print(
    "LOADED_BLOCKED", sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED)), flush=True))
"""


def run_blocked(code: str, *, timeout: int = 600,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs `code` in `python -c` from the repository root with the harness's packages
    blocked; its stdout ends with the line `LOADED_BLOCKED [...]` unless it crashed."""
    return subprocess.run([sys.executable, "-c", _PRELUDE + code], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)
