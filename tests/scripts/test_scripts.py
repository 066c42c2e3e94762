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


def test_reproduce_study_writes_one_row_per_run_and_tables_mean_and_range(tmp_path):
    for seed, error in ((0, 10.0), (1, 12.0)):
        run = tmp_path / "runs" / f"manifold_s{seed}"
        make_run(run, [0, 1, 2], 2.0, error, 0.3)
        config = json.loads((run / "config.json").read_text())
        config.update(seed=seed, num_classes=10, optimizer={"milestones": [1, 2]},
                      data={"name": "cifar10", "labels_per_class": 100})
        (run / "config.json").write_text(json.dumps(config))
        summary = json.loads((run / "summary.json").read_text())
        summary.update(train_accuracy=0.99, train_s=5.0, fgsm_epsilon=0.03,
                       fgsm_space="normalized", best_test_error_percent=error - 1,
                       deform_rotate40_accuracy=0.6 + seed / 10, pgd_accuracy_20=0.2 + seed / 10,
                       pgd_accuracy_1=0.5, pgd_clean_accuracy=0.9, ood_mnist_msp_auroc=0.8,
                       ood_mnist_energy_auroc=0.85, ood_mnist_msp_fpr95=0.4,
                       ood_mnist_mean_confidence=0.7)
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "evaluation.json").write_text(json.dumps({
            "reliability": {"count": [0, 3, 7], "accuracy": [0, 0.5, 0.9],
                            "confidence": [0, 0.5, 0.95]},
            "rotation_sweep": {"angle": [0, 45, 90], "accuracy": [0.9, 0.5 + seed / 10, 0.2],
                               "nll": [0.3, 1.0, 2.0]},
            "confidence_histogram": {"in_distribution": [1, 2, 7], "mnist": [5, 4, 1]}}))
        (run / "wall.json").write_text(json.dumps({"wall_s": 7.0 + seed}))
        (run / "history.json").write_text(json.dumps([  # validation prefers epoch 2 (tie: later)
            {"step": s, "epoch": s, "val_accuracy": v, "test_error_percent": e, "test_nll": n}
            for s, v, e, n in ((1, 0.5, 20.0, 0.9), (2, 0.8, 11.5, 0.35), (3, 0.7, error, 0.3),
                               (0, 0.8, 99.0, 9.9))]))
    ict = tmp_path / "runs" / "ict_s0"  # a semi-supervised run: no config.mix
    make_run(ict, [], 0.0, 9.0, 0.3)
    config = json.loads((ict / "config.json").read_text())
    del config["mix"]
    config.update(seed=0, num_classes=10, optimizer={"milestones": [1]},
                  data={"name": "cifar10", "labels_per_class": 400},
                  semi_supervised={"targets": "mean_teacher", "supervised_alpha": 1.0,
                                   "supervised_layers": [0], "unsupervised_alpha": 1.0,
                                   "unsupervised_layers": [0], "unsupervised_weight_max": 100.0,
                                   "rampup_epochs": 250.0, "ema_decay": 0.999})
    (ict / "config.json").write_text(json.dumps(config))
    summary = json.loads((ict / "summary.json").read_text())
    summary.update(train_accuracy=0.9, train_s=5.0, train_examples=4000)
    (ict / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "docs" / "results").mkdir(parents=True)  # another architecture, for --beside
    (tmp_path / "docs" / "results" / "other.json").write_text(json.dumps([
        {"model": "vit", "method": "ERM", "train_size": size, "test_error_percent": 20.0,
         "test_nll": 0.5, "fgsm_accuracy": 0.4} for size in (1000, 5000)]))
    result = subprocess.run([sys.executable, "scripts/reproduce.py", "--study", "toy", "--read",
                             str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"),
                             "--device", "cpu", "--beside", "other"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "docs" / "results" / "toy.json").read_text())
    ict_row = rows.pop()
    assert [(r["seed"], r["test_error_percent"], r["train_size"], r["wall_seconds"])
            for r in rows] == [(0, 10.0, 1000, 7.0), (1, 12.0, 1000, 8.0)]
    assert "semi_supervised" not in rows[0]
    assert [(r["val_selected_test_error_percent"], r["val_selected_test_nll"],
             r["val_selected_epoch"]) for r in rows] == [(11.5, 0.35, 2)] * 2
    assert [round(r["final_val_error_percent"], 6) for r in rows] == [30.0] * 2  # epoch 3: 0.7
    assert (ict_row["method"], ict_row["semi_supervised"], ict_row["labels_per_class"],
            ict_row["unsupervised_weight_max"], ict_row["alpha"], ict_row["train_size"]) == (
        "ICT", True, 400, 100.0, 1.0, 4000)
    assert rows[0]["method"] == "Manifold Mixup" and rows[0]["device"] == "cpu"
    line = next(text for text in result.stdout.splitlines() if "Manifold Mixup" in text)
    assert "| 11.00 (10.00–12.00) | 10.00 (9.00–11.00) |" in line  # final, best
    assert rows[1]["pgd_accuracy_20"] == 0.2 + 1 / 10 and rows[1]["ood_mnist_msp_auroc"] == 0.8
    tables = result.stdout.split("Attacks (accuracy):")[1]
    assert ("| 1000 images, Manifold Mixup | 2 | 0.900 (0.900–0.900) | 0.500 (0.500–0.500) | "
            "0.500 (0.500–0.500) | 0.250 (0.200–0.300) |") in tables  # clean, FGSM, PGD-1, -20
    # (the ICT run has 4,000 images: each size gets its own lines)
    rotations = result.stdout.split("Rotations of the test set")[1].split("Out-of-")[0]
    assert rows[1]["rotation_45_accuracy"] == 0.6 and rows[1]["rotation_90_nll"] == 2.0
    assert ("| 1000 images, Manifold Mixup | 2 | 0.900 (0.900–0.900) | 0.550 (0.500–0.600) | 0.200 "
            "(0.200–0.200) | 1.00 (1.00–1.00) | 2.00 (2.00–2.00) |") in rotations
    for figure in ("reliability", "rotation", "confidence", "beside_other"):
        assert (tmp_path / "docs" / "figures" / f"toy_{figure}.png").stat().st_size > 1000


def test_study_plans_state_their_runs():
    result = subprocess.run([sys.executable, "scripts/study.py", "fashion_curve", "--root", "R",
                             "--dry_run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    commands = result.stdout.splitlines()
    assert len(commands) == 18  # 3 sizes × 2 seeds × 3 methods
    assert sum("labels_per_class=1000" in c and "epochs=160" in c for c in commands) == 6
    assert all("validation_per_class=500" in c and "model.width=16" in c for c in commands)


def test_vit_studies_train_plain_and_try_every_point_set():
    def plan(name):
        result = subprocess.run([sys.executable, "scripts/study.py", name, "--root", "R",
                                 "--dry_run"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    points, baselines = plan("vit_points"), plan("vit_baselines")
    assert [c.split("points=")[1].split(" ")[0] for c in points if "points=" in c] == [
        "early", "middle", "late", "all"]
    assert len(points) == 6 and len(baselines) == 8  # 2 sizes × 2 seeds × ERM, Input
    for command in points + baselines:  # no augmentation or stochastic depth: ERM can fit
        assert all(flag in command for flag in (
            "--config.data.crop_padding=0 ", "--config.data.flip=False ",
            "--config.model.stochastic_depth=0.0", "validation_per_class=500 "))
    assert sum("labels_per_class=500 " in c and "epochs=50 " in c for c in baselines) == 4


def test_study_rows_of_one_seed_are_never_averaged_as_seeds():
    """study_results.variant: two seeds of a method share a label (their mean is reported); two
    runs of one seed that differ in something the label does not name get their run names."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import study_results

    def row(run, seed, **changes):
        return dict(dict(run=run, seed=seed, method="SSL Manifold Mixup", semi_supervised=True,
                         unsupervised_weight_max=1.0, batch_norm_passes="step",
                         ict_settings=False, label="SSL Manifold Mixup"), **changes)

    seeds = [row("manifold_s0", 0), row("manifold_s1", 1)]
    assert {study_results.variant(r, seeds) for r in seeds} == {"SSL Manifold Mixup"}
    diagnosis = [row("a_s0", 0), row("b_s0", 0), row("w_s0", 0, unsupervised_weight_max=0.3)]
    assert [study_results.variant(r, diagnosis) for r in diagnosis] == [
        "SSL Manifold Mixup, w_max 1 [a_s0]", "SSL Manifold Mixup, w_max 1 [b_s0]",
        "SSL Manifold Mixup, w_max 0.3"]
    # one seed at two training-set sizes: two groups of the study, no run names needed
    sizes = [dict(run=f"n{n}_erm_s0", seed=0, method="ERM", train_size=n) for n in (1000, 5000)]
    assert [study_results.variant(r, sizes) for r in sizes] == ["ERM", "ERM"]
    # a study of mix points: each set is its own group, across seeds
    points = [dict(run=f"m_{layers}_s{seed}", seed=seed, method="Manifold Mixup",
                   mix_layers=list(layers)) for layers in ((0, 1, 2), (0, 4, 5)) for seed in (0, 1)]
    assert [study_results.variant(r, points) for r in points] == [
        "Manifold Mixup at {0, 1, 2}", "Manifold Mixup at {0, 1, 2}",
        "Manifold Mixup at {0, 4, 5}", "Manifold Mixup at {0, 4, 5}"]


def test_ssl_report_table_leaves_unreached_epochs_blank_and_names_each_best():
    """ssl_report.markdown_table: a column per epoch any run reached, a blank cell where a run
    has not reached it, and each run's lowest error with its epoch."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import ssl_report

    table = ssl_report.markdown_table([("done", [3, 6, 9], [17.6, 14.5, 15.0]),
                                       ("running", [3, 6], [16.2, 16.3])])
    assert table.splitlines() == ["| run | 3 | 6 | 9 | best (epoch) |",
                                  "|---|---|---|---|---|",
                                  "| done | 17.6 | 14.5 | 15.0 | 14.5 (6) |",
                                  "| running | 16.2 | 16.3 |  | 16.2 (3) |"]


def test_flattening_report_table_averages_the_newest_checkpoint_over_seeds():
    """scripts/flattening_report.table: per split, variant and method, the mean (min–max) over
    seeds of each measure at each run's newest checkpoint (older ones ignored)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import flattening_report

    def measures(first, rest, share, rank):
        return {"mean_first": first, "mean_rest_sum": rest, "mean_first_share": share,
                "mean_effective_rank": rank}

    def run(name, newest):
        old = {"train": {"all": measures(0, 0, 0, 0)}, "test": {"all": measures(0, 0, 0, 0)}}
        new = {"train": {"all": newest}, "test": {"all": newest}}
        return {"run": name, "checkpoints": [old, new]}

    rows = [run("erm_s0", measures(10, 2, 0.8, 1.5)), run("erm_s1", measures(20, 4, 0.6, 2.5)),
            run("manifold_s0", measures(5, 1, 0.9, 1.2))]
    lines = flattening_report.table(rows).splitlines()
    assert lines[2] == "| train | all | erm | 2 | 15 (10–20) | 3 (2–4) | 0.7 (0.6–0.8) | 2 (1.5–2.5) |"
    assert lines[3] == "| train | all | manifold | 1 | 5 | 1 | 0.9 | 1.2 |"
    assert len(lines) == 2 + 4  # two splits × one variant × two methods
