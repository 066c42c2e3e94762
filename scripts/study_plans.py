"""The studies `scripts/study.py` runs: each a function listing its `mmix-train` runs (config,
overrides), stating its numbers; `docs/reproduction.md` says why they were chosen."""

from __future__ import annotations

import dataclasses
import pathlib
import sys

METHODS = ("erm", "input", "manifold")


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    config: str                      # configs/FILE.py:ARG
    overrides: tuple[tuple[str, str], ...] = ()

    def flags(self, workdir: pathlib.Path, extra: list[str]) -> list[str]:
        """mmix-train's flags for this run (config, workdir, overrides, then `extra`)."""
        overrides = [f"--config.{key}={value}" for key, value in self.overrides]
        return [f"--config={self.config}", f"--workdir={workdir}", *overrides, *extra]

    def command(self, workdir: pathlib.Path, extra: list[str]) -> list[str]:
        return [sys.executable, "-m", "mmix_jax.harness.main", *self.flags(workdir, extra)]


def fashion_curve() -> list[Run]:
    """Data-efficiency curve: PreActResNet18 (width 16) on 100 / 500 / 1000 Fashion-MNIST
    images per class, 500 per class held out for validation, 2 seeds; epochs per size long
    enough for ERM to fit its training set, the README schedule's shape (×0.1 at 1/4, 1/2, 3/4)."""
    epochs = {100: 300, 500: 200, 1000: 160}
    runs = []
    for per_class, total in epochs.items():  # small sets first: complete points come first
        for seed in (0, 1):
            for method in METHODS:
                runs.append(Run(
                    f"n{per_class}_{method}_s{seed}",
                    f"configs/supervised.py:fashion_mnist,preactresnet18,{method},epochs={total}",
                    (("seed", str(seed)), ("model.width", "16"),
                     ("data.labels_per_class", str(per_class)),
                     ("data.validation_per_class", "500"),
                     ("checkpoint.every_epochs", str(total // 20)))))
    return runs


def fashion_full() -> list[Run]:
    """Full width PreActResNet18 on the whole Fashion-MNIST training set (less 500 per class
    for validation), one seed per method, the README schedule's shape; 25 epochs: what the
    30 minutes of GPU time left after the curve allowed (all three at once on one H100)."""
    epochs = 25
    return [Run(f"full_{method}_s0",
                f"configs/supervised.py:fashion_mnist,preactresnet18,{method},epochs={epochs}",
                (("seed", "0"), ("model.width", "64"), ("data.validation_per_class", "500"),
                 ("checkpoint.every_epochs", str(max(1, epochs // 20)))))
            for method in METHODS]


def flattening_mnist() -> list[Run]:
    """Flattening (Sec. 3.2, App. G) on 10,000 MNIST digits (200 per class for test, 50 for
    validation): the bottleneck MLP, three methods, two seeds, 60 epochs (×0.1 at 20, 40)."""
    return [Run(f"{method}_s{seed}", f"configs/flattening.py:npz,{method}",
                (("seed", str(seed)), ("data.validation_per_class", "50"),
                 ("checkpoint.every_epochs", "3")))
            for seed in (0, 1) for method in METHODS]



def flattening_fashion() -> list[Run]:
    """Flattening at the paper's examples-per-class scale: the bottleneck MLP on Fashion-MNIST's
    training set less 500 per class for validation (5,500 per class), three methods, two seeds.
    15 epochs (8,250 updates, ×0.1 at 5 and 10): what one session's two cores allowed for six
    runs; a checkpoint every epoch, all kept, so the spectra can be followed through training."""
    epochs = 15
    return [Run(f"{method}_s{seed}", f"configs/flattening.py:fashion_mnist,{method},epochs={epochs}",
                (("seed", str(seed)), ("data.validation_per_class", "500"),
                 ("checkpoint.every_epochs", "1"), ("checkpoint.keep", str(epochs))))
            for seed in (0, 1) for method in METHODS]


# ViT on Fashion-MNIST, set so that ERM fits its training set within a CPU budget: no
# augmentation and no stochastic depth (with both, 300 epochs at 100 per class left ERM at 94–96 %
# training accuracy, docs/reproduction.md §7). Images per class → epochs: 3,100 and 7,800
# updates in batches of 32; ERM reaches 100 % training accuracy by epoch 48 at 100 per class.
VIT_EPOCHS = {100: 100, 500: 50}
VIT_PLAIN = (("data.crop_padding", "0"), ("data.flip", "False"), ("model.stochastic_depth", "0.0"))
VIT_AUGMENTED_EPOCHS = 300  # 9,300 updates at 100 per class: ERM ends at 94–96 % training accuracy
VIT_BATCH = 32
VIT_POINT_SETS = ("early", "middle", "late", "all")
VIT_CHOSEN_POINTS = "early"  # lowest validation error in vit_points, seed 0 (docs/reproduction.md §7)


def vit_run(per_class: int, method: str, seed: int, points: str = "",
            augmented: bool = False) -> Run:
    """configs/vit.py's ViT-mini (patch 4) in batches of VIT_BATCH without augmentation or
    stochastic depth (VIT_PLAIN), 500 per class held out for validation; the robustness rows
    but the deformations, rotations by 0/30/60/90° and PGD with 20 steps only (CPU time). With
    `augmented`: the config's augmentation and stochastic depth, for VIT_AUGMENTED_EPOCHS."""
    epochs = VIT_AUGMENTED_EPOCHS if augmented else VIT_EPOCHS[per_class]
    name = (f"n{per_class}_{method}{'_' + points if points else ''}"
            f"{'_augmented' if augmented else ''}_s{seed}")
    arg = f"fashion_mnist,vit_mini,{method},epochs={epochs}" + (f",points={points}" if points else "")
    return Run(name, f"configs/vit.py:{arg}",
               (("seed", str(seed)), ("data.labels_per_class", str(per_class)),
                ("data.validation_per_class", "500"), ("batch_size", str(VIT_BATCH)),
                ("eval.deformations", "()"), ("eval.rotation_angles", "(0.0, 30.0, 60.0, 90.0)"),
                ("eval.pgd_steps", "(20,)"), ("checkpoint.every_epochs", str(epochs // 10)),
                *(() if augmented else VIT_PLAIN)))


def vit_points() -> list[Run]:
    """Which of the ViT's mix points help, chosen on validation: 100 images per class, seed 0,
    Manifold Mixup over each point set of configs/vit.py (all with the input), beside ERM and
    Input Mixup."""
    return [vit_run(100, "erm", 0), vit_run(100, "input", 0)] + [
        vit_run(100, "manifold", 0, points) for points in VIT_POINT_SETS]


def vit_baselines() -> list[Run]:
    """ERM and Input Mixup on the ViT-mini at 100 and 500 images per class, 2 seeds: the runs of
    vit_fashion that do not wait for the choice of points."""
    return [vit_run(per_class, method, seed) for per_class in VIT_EPOCHS for seed in (0, 1)
            for method in ("erm", "input")]


def chosen_points(method: str) -> str:
    """The point set a ViT run of `method` names: VIT_CHOSEN_POINTS for Manifold Mixup, none for
    the others; stops the study while vit_points has not chosen yet."""
    if not VIT_CHOSEN_POINTS:
        raise SystemExit("run vit_points first and set VIT_CHOSEN_POINTS from its validation error")
    return VIT_CHOSEN_POINTS if method == "manifold" else ""


def vit_fashion() -> list[Run]:
    """ERM / Input / Manifold Mixup (the chosen points) on a ViT-mini at 100 and 500 images per
    class, 2 seeds; the small size first, so that complete points come first."""
    return [vit_run(per_class, method, seed, chosen_points(method))
            for per_class in VIT_EPOCHS for seed in (0, 1) for method in METHODS]


def vit_augmented() -> list[Run]:
    """The same comparison with the config's augmentation and stochastic depth: 100 images per
    class, 300 epochs, seed 0 (the CPU time left), Manifold Mixup at the points chosen above."""
    return [vit_run(100, method, 0, chosen_points(method), augmented=True) for method in METHODS]


def fashion_robustness() -> list[Run]:
    """Robustness beyond FGSM (deformations, out-of-distribution detection, PGD) at the curve's
    1,000-image point, where ERM overfits and the mixups win: PreActResNet18 width 16, 100
    images per class (500 per class for validation), 300 epochs, 3 methods, 2 seeds. Training
    is the curve's; the robustness metrics come from `--mode=evaluate` on the checkpoints."""
    epochs = 300
    return [Run(f"n100_{method}_s{seed}",
                f"configs/supervised.py:fashion_mnist,preactresnet18,{method},epochs={epochs}",
                (("seed", str(seed)), ("model.width", "16"), ("data.labels_per_class", "100"),
                 ("data.validation_per_class", "500"),
                 ("checkpoint.every_epochs", str(epochs // 20))))
            for seed in (0, 1) for method in METHODS]


def ssl_fashion_mnist() -> list[Run]:
    """Semi-supervised Fashion-MNIST (configs/ssl_fashion_mnist.py: 100 labelled images per
    class, 500 per class for validation, WRN-10-1): labelled-only vs Manifold Mixup vs ICT,
    2 seeds; 16 epochs (8,800 updates) instead of the config's 60: what this session's CPU
    time allowed for six runs, milestones and ramp-up at the same fractions."""
    epochs = 16
    return [Run(f"{method}_s{seed}", f"configs/ssl_fashion_mnist.py:{method},epochs={epochs}",
                (("seed", str(seed)),))
            for seed in (0, 1) for method in ("supervised", "manifold", "ict")]


def ssl_fashion_gate() -> list[Run]:
    """Issue 22's cheaper first gate and diagnosis, seed 0: Fashion-MNIST with 25 labelled
    images per class (the rest unlabelled, 500 per class for validation), WRN-10-1, 12 epochs
    (6,600 updates, an evaluation per epoch: validation curves while w ramps over the first
    40 %); labelled-only, SSL Manifold Mixup at w_max 1 / 0.3 / 0.1, the authors' five
    BatchNorm passes at w_max 1, ICT with its preset, ICT at w_max 0 (its run settings
    without the consistency term: the control), and SSL Manifold Mixup's consistency term on
    ICT's settings. Settings for the 100-label study are chosen on these runs' validation
    error."""
    epochs, common = 12, (("seed", "0"), ("data.labels_per_class", "25"))
    manifold = f"configs/ssl_fashion_mnist.py:manifold,epochs={epochs}"
    ict = f"configs/ssl_fashion_mnist.py:ict,epochs={epochs}"
    # SSL Manifold Mixup's consistency term on ICT's settings and labelled term (the paper's
    # unlabelled mixing: targets from the same network, α = 2 at {0, 1, 2}, w_max 1 ramped
    # over 40 %)
    on_ict = common + MANIFOLD_CONSISTENCY + (
        ("semi_supervised.rampup_epochs", f"{0.4 * epochs:g}"),)
    return [
        Run("supervised_s0", f"configs/ssl_fashion_mnist.py:supervised,epochs={epochs}", common),
        Run("manifold_w1_s0", manifold, common),
        Run("manifold_w0.1_s0", manifold,
            common + (("semi_supervised.unsupervised_weight_max", "0.1"),)),
        Run("ict_s0", ict, common),
        Run("manifold_w0.3_s0", manifold,
            common + (("semi_supervised.unsupervised_weight_max", "0.3"),)),
        Run("manifold_w1_bnauthors_s0", manifold,
            common + (("semi_supervised.batch_norm_passes", "authors"),)),
        # ICT without its consistency term (and so without a teacher): what its run settings
        # and labelled term give alone (added after ICT led labelled-only on validation)
        Run("ict_w0_s0", ict, common + WITHOUT_CONSISTENCY),
        # added after that control led every run
        Run("manifold_ict_settings_s0", ict, on_ict),
        # the same with the step schedule (×0.1 at epochs 6, 9, 10): the run above collapsed
        # after its ramp-up while the cosine kept the learning rate high (docs/reproduction.md)
        Run("manifold_ict_settings_step_s0", ict, on_ict + (("optimizer.schedule", "step"),)),
        # ICT's settings with both of the paper's terms (labelled: α = 0.1 at {0, 1, 2}): the
        # step schedule collapsed too, so is it the weak input-mixup labelled term?
        Run("manifold_ict_settings_paper_labelled_s0", ict,
            on_ict + PAPER_LABELLED),
        # its own baseline: the same labelled term and settings without the consistency term
        Run("supervised_ict_settings_paper_labelled_s0", ict,
            common + PAPER_LABELLED + WITHOUT_CONSISTENCY),
    ]


# A method's labelled term and run settings alone: w_max 0 (no unlabelled passes, no teacher).
WITHOUT_CONSISTENCY = (("semi_supervised.unsupervised_weight_max", "0.0"),)

# The paper's labelled term (config_lib.semi_supervised_methods' "supervised"), as overrides.
PAPER_LABELLED = (("semi_supervised.supervised_alpha", "0.1"),
                  ("semi_supervised.supervised_layers", "(0,1,2)"))

# The paper's semi-supervised consistency term (config_lib.semi_supervised_methods' "manifold")
# as overrides of another method's config, less its ramp-up (a number of epochs per study);
# the values of config_lib.semi_supervised_methods, copied so that planning imports no JAX.
MANIFOLD_CONSISTENCY = (("semi_supervised.targets", "self"),
                        ("semi_supervised.unsupervised_alpha", "2.0"),
                        ("semi_supervised.unsupervised_layers", "(0,1,2)"),
                        ("semi_supervised.unsupervised_weight_max", "1.0"))


def ssl_fashion_100() -> list[Run]:
    """Issue 22's study: Fashion-MNIST with 100 labelled images per class (500 per class for
    validation), WRN-10-1, the config's 60 epochs (33,000 updates); labelled-only, SSL Manifold
    Mixup with the settings chosen on the gate's validation error (GATE_CHOICE), ICT with its
    preset, ICT at w_max 0 (ICT's settings without the consistency term: the gate's best);
    seeds 0 and 1, seed 0 of each method first."""
    runs = []
    for seed in (0, 1):
        common = (("seed", str(seed)),)
        runs += [Run(f"supervised_s{seed}", "configs/ssl_fashion_mnist.py:supervised", common),
                 Run(f"manifold_s{seed}", "configs/ssl_fashion_mnist.py:manifold",
                     common + GATE_CHOICE),
                 Run(f"ict_s{seed}", "configs/ssl_fashion_mnist.py:ict", common),
                 # the gate's strongest run: ICT's settings without its consistency term
                 Run(f"ict_w0_s{seed}", "configs/ssl_fashion_mnist.py:ict",
                     common + WITHOUT_CONSISTENCY)]
    return runs


# SSL Manifold Mixup's settings for ssl_fashion_100: those of the gate run with the lowest
# validation error (21.0 %: w_max 1 with the authors' BatchNorm passes; w_max 0.3 / 1 / 0.1 with
# ours 21.2 / 21.3 / 21.8 %, all within one standard error of 0.6; docs/reproduction.md §4)
GATE_CHOICE = (("semi_supervised.unsupervised_weight_max", "1.0"),
               ("semi_supervised.batch_norm_passes", "authors"))


def ssl_moons() -> list[Run]:
    """configs/ssl_moons.py (two moons, 3 labels per class, ICT's 3 × 20 MLP), seeds 0-3: the
    three methods, and ICT at (α 0.2, weight 30), the other candidate its (α, weight) was
    chosen from on mean validation accuracy."""
    runs = []
    for seed in range(4):
        common = (("seed", str(seed)),)
        runs += [Run(f"s{seed}", "configs/ssl_moons.py", common),
                 Run(f"ict_a0.2_w30_s{seed}", "configs/ssl_moons.py:ict",
                     common + (("semi_supervised.supervised_alpha", "0.2"),
                               ("semi_supervised.unsupervised_alpha", "0.2"),
                               ("semi_supervised.unsupervised_weight_max", "30.0")))]
    return runs


STUDIES = {"fashion_curve": fashion_curve, "fashion_full": fashion_full,
           "flattening_mnist": flattening_mnist, "flattening_fashion": flattening_fashion,
           "fashion_robustness": fashion_robustness, "vit_points": vit_points,
           "vit_baselines": vit_baselines, "vit_fashion": vit_fashion,
           "vit_augmented": vit_augmented,
           "ssl_fashion_mnist": ssl_fashion_mnist, "ssl_fashion_gate": ssl_fashion_gate,
           "ssl_fashion_100": ssl_fashion_100, "ssl_moons": ssl_moons}
