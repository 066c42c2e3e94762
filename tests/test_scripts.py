"""scripts/reproduce.py and scripts/plot_spectra.py on hand-made run folders."""

import json
import subprocess
import sys

from cli_runs import ROOT


def make_run(path, layers, alpha, error, nll, spectrum=None):
    path.mkdir(parents=True)
    config = {"data": {"name": "cifar10"}, "model": {"name": "preactresnet18", "width": 64},
              "mix": {"layers": layers, "alpha": alpha}, "num_epochs": 3}
    (path / "config.json").write_text(json.dumps(config))
    (path / "summary.json").write_text(json.dumps(
        {"test_error_percent": error, "test_nll": nll, "test_ece": 0.01, "fgsm_accuracy": 0.5}))
    if spectrum:
        (path / "evaluation.json").write_text(json.dumps(
            {"accuracy": 1 - error / 100, "spectrum_point": 2, "spectrum": spectrum}))


def test_reproduce_puts_each_run_beside_the_papers_figure(tmp_path):
    make_run(tmp_path / "erm", [], 0.0, 7.5, 0.25)
    make_run(tmp_path / "input", [0], 1.0, 6.25, 0.2)
    make_run(tmp_path / "manifold", [0, 1, 2], 2.0, 5.0, 0.15)
    result = subprocess.run([sys.executable, "scripts/reproduce.py", "--read", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| cifar10")]
    assert [row.split(" | ")[2] for row in rows] == ["ERM", "Input Mixup", "Manifold Mixup"]
    assert "| 7.50 | 4.83 | 0.250 | 0.190 |" in rows[0]
    assert "| 6.25 | 3.82 | 0.200 | 0.186 |" in rows[1]
    assert "| 5.00 | 2.95 | 0.150 | 0.137 |" in rows[2]


def test_plot_spectra_writes_a_figure(tmp_path):
    spectrum = {"singular_values": [[5.0, 1.0], [4.0, 2.0]], "mean_first": 4.5,
                "mean_rest_sum": 1.5, "first": [5.0, 4.0], "rest_sum": [1.0, 2.0]}
    make_run(tmp_path / "erm", [], 0.0, 7.5, 0.25, spectrum)
    out = tmp_path / "spectra.png"
    result = subprocess.run([sys.executable, "scripts/plot_spectra.py", str(tmp_path / "erm"),
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "mean largest singular value 4.50, mean sum of the rest 1.50" in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
