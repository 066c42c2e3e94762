"""mmix_jax: Manifold Mixup (Verma et al., ICML 2019) in JAX/Flax.

The public API: a pure, jit-able `mixup_step(state, batch, rng, config=MixSpec(...))`, the
lower-level `mixup_loss`, `sample_mix`, `mix`, `mix_targets`, models that take `mix_layer`,
`perm` and `lam` explicitly in `__call__`, and `mixable(module, points)` for Linen models that
do not (`mmix_jax.nnx` for NNX models). Semi-supervised: `ssl_mixup_step(state, labeled,
unlabeled, rng, config=SemiSupervisedSpec(...))` (Manifold Mixup's or ICT's targets).
"""

from mmix_jax.losses import bce_loss, get_loss, soft_ce_loss
from mmix_jax.mixup import (
    NO_MIX,
    MixDraw,
    MixPoint,
    MixSpec,
    maybe_mix,
    mix,
    mix_targets,
    sample_mix,
)
from mmix_jax.models import get_model
from mmix_jax.optim import paper_sgd, step_schedule
from mmix_jax.semi_supervised import SemiSupervisedSpec, ssl_mixup_step, unsupervised_weight
from mmix_jax.state import TrainState, create_train_state, with_teacher
from mmix_jax.step import eval_step, mixup_loss, mixup_step
from mmix_jax.wrap import Mixable, mixable

__all__ = [
    "NO_MIX", "MixDraw", "MixPoint", "MixSpec", "Mixable", "TrainState", "bce_loss", "create_train_state",
    "eval_step", "get_loss", "get_model", "maybe_mix", "mix", "mix_targets", "mixable",
    "mixup_loss", "mixup_step", "paper_sgd", "sample_mix", "soft_ce_loss", "step_schedule",
    "SemiSupervisedSpec", "ssl_mixup_step", "unsupervised_weight", "with_teacher",
]
__version__ = "0.1.0"
