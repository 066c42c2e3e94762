"""Manifold Mixup for Linen models we did not write: `mixable(module, points=(...))`.

    model = mmix_jax.mixable(TheirResNet(num_classes=10), points=("stage1", "stage2"))
    logits = model.apply(variables, x, train=True, mix_layer=k, perm=perm, lam=lam,
                         mutable=["batch_stats"])

Mix point 0 is the model's input and point i the output of the i-th named submodule (by its
path below the model, e.g. "block1", "stages_0/block_2", "ResNetBlock_3"). The wrapper honours
the mixing contract of our own models (a traced k compiles once: `maybe_mix` is a select),
passes every other argument through, and sows each point's state as `mix_point_{i}`.

How: `nn.share_scope` makes the wrapper and the model one scope, so the wrapped model takes the
original variables exactly (no new variables, no extra nesting: checkpoints and pretrained
weights load as they are), and `nn.intercept_methods` sees every submodule call during the
forward pass, so the model's code is not touched and any submodule can be a mix point.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax

from mmix_jax.errors import MixPointError
from mmix_jax.mixup import check_mix_args, check_mix_points, maybe_mix, recording_mix_points, requested_points
from mmix_jax.variables import mode_kwargs


class Mixable(nn.Module):
    """`module` with mix points after the submodules named in `points` (see the module doc)."""

    module: nn.Module
    points: tuple[str, ...]

    def setup(self):
        nn.share_scope(self, self.module)

    @property
    def num_mix_points(self) -> int:
        return len(self.points) + 1

    def __call__(self, x: jax.Array, *args: Any, mix_layer: Optional[jax.Array] = None,
                 perm: Optional[jax.Array] = None, lam: Optional[jax.Array] = None,
                 **kwargs: Any) -> Any:
        batch = x.shape[0]
        check_mix_args(x, mix_layer, perm, lam)
        index = {path: i + 1 for i, path in enumerate(self.points)}
        seen: dict[str, int] = {}
        root = len(self.path)

        def mix_at(point: int, h: jax.Array) -> jax.Array:
            h = maybe_mix(h, point, mix_layer, perm, lam)
            self.sow("intermediates", f"mix_point_{point}", h)
            return h

        def interceptor(call: Callable[..., Any], call_args: tuple, call_kwargs: dict,
                        context: nn.module.InterceptorContext) -> Any:
            module = context.module
            if context.method_name != "__call__" or module is self or module is self.module:
                return call(*call_args, **call_kwargs)
            path = "/".join(module.path[root:])
            seen[path] = seen.get(path, 0) + 1
            out = call(*call_args, **call_kwargs)
            if path not in index:
                return out
            shape_ok = isinstance(out, jax.Array) and out.ndim > 0 and out.shape[0] == batch
            if (seen[path] > 1 or not shape_ok) and lifted(module, root):
                raise MixPointError(
                    f"mix point {path!r} is inside (or is) a lifted transform such as nn.scan or "
                    "nn.vmap: its body runs once per iteration (and a scan returns (carry, "
                    "outputs)), so it cannot be one mix point. Name a submodule outside the "
                    "transform, or unroll the scanned blocks.")
            if seen[path] > 1:
                raise MixPointError(
                    f"mix point {path!r} was called {seen[path]} times in one forward pass (a "
                    "shared submodule): a mix point must run once; name a submodule used once.")
            if not shape_ok:
                shape = getattr(out, "shape", type(out).__name__)
                raise MixPointError(
                    f"mix point {path!r} returns {shape}, not a batch-major array [{batch}, ...]: "
                    "name a submodule whose output is the hidden state.")
            return mix_at(index[path], out)

        with recording_mix_points() as visited:
            x = mix_at(0, x)
            with nn.intercept_methods(interceptor):
                out = self.module(x, *args, **mode_kwargs(self.module, kwargs))
        missing = [path for path in self.points if path not in seen]
        if missing:
            raise MixPointError(
                f"mix point(s) {missing} are not submodules called by {type(self.module).__name__}; "
                f"its submodule paths are: {sorted(seen)}.")
        check_mix_points(requested_points(mix_layer), visited, self.module)
        return out


def lifted(module: nn.Module, root: int) -> bool:
    """Whether `module` belongs to a lifted transform's body (nn.scan, nn.vmap, also nn.remat,
    which is harmless): its chain of parent modules stops below the model (the transform gives
    it a bare scope as parent)."""
    top = module
    while isinstance(top.parent, nn.Module):
        top = top.parent
    return len(top.path) > root


def mixable(module: nn.Module, points: Sequence[str]) -> Mixable:
    """`module` (unchanged) with Manifold Mixup's mix points: 0 = input, i = `points[i − 1]`."""
    if isinstance(points, str):
        raise MixPointError(f"points = {points!r}: give a sequence of paths, e.g. ({points!r},).")
    return Mixable(module, tuple(points))


__all__ = ["Mixable", "mixable"]
