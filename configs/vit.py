"""Vision Transformers with ERM, Input Mixup and Manifold Mixup on small image data sets.

    mmix-train --config=configs/vit.py:fashion_mnist,manifold --config.data.manual_dir=DIR --workdir=...
    mmix-train --config=configs/vit.py:cifar10,vit_s --workdir=runs/vit_c10      # all 3 methods
    mmix-train --config=configs/vit.py:fashion_mnist,manifold,points=late,epochs=50 --workdir=...

Argument: DATASET[,SIZE][,METHOD][,epochs=N][,points=SET]. What ViTs need on small data, each
number stated below: AdamW with decoupled weight decay on the kernels, a linear warm-up and a
cosine decay to 0 at the last epoch, stochastic depth, and the augmentation the ResNets get
(random crop with 2-pixel padding, flips where the data allow). Patch 4: 49 tokens at 28×28,
64 at 32×32 (and the class token).

Manifold Mixup's eligible points (points=SET) are the input plus a set of hidden points of
the ViT (mmix_jax.models.vit: 1 = tokens after the embedding, 1 + j = after block j); which
set helps was chosen on a validation split (docs/reproduction.md §7: early, the default).
"""

import ml_collections

from mmix_jax.harness import config_lib
from mmix_jax.models.vit import SIZES as VIT_SIZES

# size → model keys (mmix_jax.models.vit.SIZES: width, depth, heads, MLP width)
SIZES = {
    "vit_mini": dict(name="vit_mini", patch_size=4),  # 64 wide, 4 blocks: CPU studies
    "vit_ti": dict(name="vit_ti", patch_size=4),
    "vit_s": dict(name="vit_s", patch_size=4),
}
STOCHASTIC_DEPTH = 0.1  # the last block's drop rate (DeiT-Ti/S use 0.1)

EPOCHS = {"fashion_mnist": 100, "cifar10": 200, "cifar100": 200, "svhn": 100}
BATCH_SIZE = 128
LEARNING_RATE = 1e-3  # peak, after the warm-up
WARMUP_FRACTION = 0.05  # of the run: 5 epochs of 100
WEIGHT_DECAY = 0.05  # decoupled (AdamW), kernels only
ADAM_BETAS = (0.9, 0.999)

# set → eligible mix points for a ViT of `depth` blocks, all with the input (point 0), as the
# paper's {0, 1, 2} for PreActResNets: the tokens (1), the first block (2), the middle ones,
# the last two, or every point.
POINT_SETS = {
    "tokens": lambda depth: (0, 1),
    "early": lambda depth: (0, 1, 2),
    "middle": lambda depth: (0, depth // 2, depth // 2 + 1),
    "late": lambda depth: (0, depth, depth + 1),
    "all": lambda depth: tuple(range(depth + 2)),
}
DEFAULT_POINTS = "early"

# method → (α, eligible points or None: the chosen POINT_SETS entry)
METHODS = {"erm": (0.0, ()), "input": (1.0, (0,)), "manifold": (2.0, None)}


def get_config(arg: str = "fashion_mnist") -> ml_collections.ConfigDict:
    picked, options = config_lib.parse_arg(
        arg, {"dataset": config_lib.IMAGE_DATASETS, "size": SIZES, "method": METHODS},
        ("epochs", "points"))
    dataset = picked.get("dataset", "fashion_mnist")
    size = picked.get("size", "vit_mini")
    points = options.get("points", DEFAULT_POINTS)
    if points not in POINT_SETS:
        raise ValueError(f"config argument {arg!r}: points={points}; choose one of "
                         f"{sorted(POINT_SETS)}.")
    epochs = int(options.get("epochs", EPOCHS[dataset]))
    config = config_lib.base(num_classes=config_lib.IMAGE_DATASETS[dataset][1],
                             num_epochs=epochs, batch_size=BATCH_SIZE, loss="soft_ce")
    config.data = config_lib.image_data(dataset)
    config.model = ml_collections.ConfigDict(dict(
        SIZES[size], pool="token", dropout_rate=0.0, stochastic_depth=STOCHASTIC_DEPTH,
        dtype="float32", init="he"))
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adamw", learning_rate=LEARNING_RATE, b1=ADAM_BETAS[0], b2=ADAM_BETAS[1],
        weight_decay=WEIGHT_DECAY, momentum=0.0, nesterov=False, milestones=(),
        decay_factor=1.0, schedule="cosine", rampdown_epochs=float(epochs),
        warmup_epochs=WARMUP_FRACTION * epochs))
    config.eval.update(config_lib.robustness(config_lib.OUT_OF_DISTRIBUTION[dataset]))
    depth = VIT_SIZES[size.removeprefix("vit_")][1]  # (width, depth, heads, MLP width)
    methods = {name: (alpha, POINT_SETS[points](depth) if layers is None else layers)
               for name, (alpha, layers) in METHODS.items()}
    config_lib.add_methods(config, picked.get("method"), methods)
    return config
