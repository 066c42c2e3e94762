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
