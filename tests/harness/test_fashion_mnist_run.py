"""End to end on real Fashion-MNIST through the CLI: prepare offline, train, evaluate again from
the checkpoint with --mode=evaluate."""

import json
import subprocess
import sys
import textwrap

import pytest
from cli_runs import ROOT, environment
from shared_data import FASHION_MNIST, needs_fashion_mnist

# A short Manifold Mixup run (mixing at both hidden layers) of a 2×512 MLP: 8 epochs, under a
# minute on 2 CPU cores. The full image configs train PreActResNets; this is the budget CI has.
CONFIG = textwrap.dedent("""
    import sys
    sys.path.insert(0, {configs!r})
    import supervised

    def get_config(arg=""):
        config = supervised.get_config("fashion_mnist,preactresnet18,manifold,epochs=8")
        config.model = dict(name="mlp", widths=(512, 512), activation="relu", dtype="float32")
        config.loss = "soft_ce"
        config.mix.layers = (1, 2)
        config.data.update(dict(crop_padding=0, flip=False, manual_dir={manual!r},
                                data_dir={data_dir!r}))
        config.optimizer.milestones = (5, 7)
        config.log_every_steps = 600
        config.checkpoint.every_epochs = 4
        # robustness has its own tests (test_robustness.py)
        config.eval.update(dict(deformations=(), rotation_angles=(), ood_sets=(), pgd_steps=()))
        return config
""")


@needs_fashion_mnist
def test_short_manifold_mixup_run_reaches_88_percent_and_evaluates_from_its_checkpoint(
        tmp_path, fashion_data_dir):
    config_file = tmp_path / "fmnist_short.py"
    config_file.write_text(CONFIG.format(configs=str(ROOT / "configs"), manual=str(FASHION_MNIST),
                                         data_dir=str(fashion_data_dir)))
    workdir = tmp_path / "run"

    def cli(*extra):
        result = subprocess.run([sys.executable, "-m", "mmix_jax.harness.main", f"--config={config_file}",
                                 f"--workdir={workdir}", *extra], cwd=ROOT, capture_output=True,
                                text=True, timeout=600, env=environment(optimized=True))
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    cli()
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"] == 8 * 600
    assert summary["test_accuracy"] >= 0.88, summary
    assert 0 <= summary["test_ece"] < 0.1 and summary["test_nll"] < 0.4
    assert summary["fgsm_accuracy"] < summary["test_accuracy"]

    (workdir / "evaluation.json").unlink()
    cli("--mode=evaluate")
    evaluation = json.loads((workdir / "evaluation.json").read_text())
    # The restored final checkpoint gives the very predictions the run ended with.
    assert evaluation["step"] == summary["steps"]
    assert evaluation["accuracy"] == summary["test_accuracy"]
    assert evaluation["nll"] == pytest.approx(summary["test_nll"], rel=1e-9)
    assert evaluation["fgsm_accuracy"] == summary["fgsm_accuracy"]


VIT_CONFIG = textwrap.dedent("""
    import sys
    sys.path.insert(0, {configs!r})
    import vit

    def get_config(arg=""):
        config = vit.get_config("fashion_mnist,vit_mini,manifold,points=all,epochs=8")
        config.model.update(dict(width=16, depth=2, num_heads=2, mlp_dim=32, patch_size=7))
        config.mix.layers = (0, 1, 2, 3)  # every point of a 2-block ViT
        config.data.update(dict(labels_per_class=50, manual_dir={manual!r}, data_dir={data_dir!r}))
        config.batch_size, config.log_every_steps = 50, 10
        config.checkpoint.every_epochs = 8
        config.optimizer.learning_rate = 3e-3
        config.eval.update(dict(deformations=(), rotation_angles=(), ood_sets=(), pgd_steps=(),
                                fgsm_epsilon=0.0))
        return config
""")


@needs_fashion_mnist
def test_a_vit_config_trains_through_the_cli_mixing_at_every_point(tmp_path, fashion_data_dir):
    """A 2-block ViT on 500 images, Manifold Mixup at all four points (input, tokens, both
    blocks) with stochastic depth: trains (above chance) and evaluates."""
    config_file = tmp_path / "vit_short.py"
    config_file.write_text(VIT_CONFIG.format(configs=str(ROOT / "configs"),
                                             manual=str(FASHION_MNIST),
                                             data_dir=str(fashion_data_dir)))
    result = subprocess.run([sys.executable, "-m", "mmix_jax.harness.main",
                             f"--config={config_file}", f"--workdir={tmp_path / 'run'}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 8 * 500 // 50
    assert summary["test_accuracy"] > 0.3, summary  # chance is 0.1
