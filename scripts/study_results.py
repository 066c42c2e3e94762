"""A study's results: one row per run (docs/results/NAME.json: every number the docs quote),
the tables (mean and range over seeds per training-set size and method) and the figures;
`scripts/reproduce.py --study NAME` calls `write_study`."""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import numpy as np
import robustness_report  # noqa: E402  (scripts/robustness_report.py)

from mmix_jax.harness.methods import (
    SEMI_SUPERVISED_TITLES,
    TITLES,
    semi_supervised_label,
    semi_supervised_title,
    title_of,
    uses_ict_settings,
)

METHOD_ORDER = TITLES + SEMI_SUPERVISED_TITLES


def method_of(config: dict[str, Any]) -> str:
    ssl = config.get("semi_supervised")
    if ssl:
        return semi_supervised_title(ssl["unsupervised_weight_max"], ssl["targets"])
    return title_of(config["mix"]["alpha"], config["mix"]["layers"])


def mixing_of(config: dict[str, Any]) -> tuple[float, list[int]]:
    """(α, mix points) of the (labelled) supervised term."""
    ssl = config.get("semi_supervised")
    if ssl:
        return ssl["supervised_alpha"], list(ssl["supervised_layers"])
    return config["mix"]["alpha"], list(config["mix"]["layers"])


def semi_supervised_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The semi-supervised settings of a row (docs/results), empty for supervised runs."""
    ssl = config.get("semi_supervised")
    if not ssl:
        return {}
    return {"semi_supervised": True, "labels_per_class": config["data"]["labels_per_class"],
            "unsupervised_weight_max": ssl["unsupervised_weight_max"],
            "targets": ssl["targets"], "unsupervised_alpha": ssl["unsupervised_alpha"],
            "unsupervised_layers": list(ssl["unsupervised_layers"]),
            "rampup_epochs": ssl["rampup_epochs"], "ema_decay": ssl["ema_decay"],
            "batch_norm_passes": ssl.get("batch_norm_passes", "step"),
            "ict_settings": uses_ict_settings(config), "label": semi_supervised_label(config)}


def variant(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The method, with its mix points, consistency weight and BatchNorm order where the study
    varies them (a ViT's point sets, a semi-supervised diagnosis), so that those runs are not
    averaged as seeds; runs on ICT's settings that are not ICT are labelled so
    (methods.semi_supervised_label). Two runs of one seed that still share a label differ in
    something else: each gets its run's name (runs at other training-set sizes are not
    compared)."""
    label = _described(row, rows)
    if any(other is not row and other["seed"] == row["seed"]
           and other.get("train_size") == row.get("train_size")
           and _described(other, rows) == label for other in rows):
        label += f" [{row['run']}]"
    return label


def _described(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    label = row["method"]
    if row.get("semi_supervised") and row.get("ict_settings") and label != "ICT":
        return row["label"]
    same = [r for r in rows if r["method"] == row["method"] and not r.get("ict_settings")]
    if len({r.get("unsupervised_weight_max") for r in same}) > 1:
        label += f", w_max {row['unsupervised_weight_max']:g}"
    if len({tuple(r.get("mix_layers") or ()) for r in same}) > 1:  # e.g. a ViT's point sets
        label += " at {" + ", ".join(map(str, row["mix_layers"])) + "}"
    if len({r.get("batch_norm_passes") for r in same}) > 1 and (
            row.get("batch_norm_passes") == "authors"):
        label += ", authors' BN passes"
    return label


def train_size(config: dict[str, Any], summary: dict[str, Any]) -> int | None:
    """Training examples: recorded by newer runs; else labels_per_class × classes."""
    if "train_examples" in summary:
        return summary["train_examples"]
    per_class = config["data"].get("labels_per_class") or 0
    return per_class * config["num_classes"] if per_class else None


def val_selected_from_history(run: pathlib.Path) -> dict[str, Any]:
    """Test error, NLL and epoch of the checkpoint with the best validation accuracy, from
    history.json (every checkpoint evaluates both splits); ties go to the later checkpoint, as
    the checkpoint manager ranks them; and the last checkpoint's validation error and NLL, on
    which a study chooses (e.g. a ViT's mix points). Empty without validation metrics. This, not summary.json,
    is the source: runs made before the selection fix (the summary's choice was always the
    latest checkpoint) are read correctly too."""
    path = run / "history.json"
    entries = [e for e in json.loads(path.read_text()) if "val_accuracy" in e] \
        if path.exists() else []
    if not entries:
        return {}
    best = max(entries, key=lambda e: (e["val_accuracy"], e["step"]))
    last = max(entries, key=lambda e: e["step"])
    return {"val_selected_test_error_percent": best["test_error_percent"],
            "val_selected_test_nll": best["test_nll"], "val_selected_epoch": best["epoch"],
            "final_val_error_percent": 100.0 * (1.0 - last["val_accuracy"]),
            "final_val_nll": last.get("val_nll")}


SEPARATION_KEYS = ("unlabeled_near_boundary", "unlabeled_near_bayes_boundary")  # 2-D runs


def evaluation_of(run: pathlib.Path) -> dict[str, Any] | None:
    """The run's evaluation.json (the final evaluation's sweeps and histograms), if it has one."""
    path = run / "evaluation.json"
    return json.loads(path.read_text()) if path.exists() else None


def study_row(run: pathlib.Path, device: str, evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """Every number the docs quote of one run (a row of docs/results/<study>.json); `evaluation`:
    its evaluation.json (evaluation_of)."""
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    wall = run / "wall.json"
    model = config["model"]
    spectrum = {k: summary.get(f"spectrum_mean_{k}") for k in ("first", "rest_sum")}
    return {
        "run": run.name, "dataset": config["data"].get("path") and "npz:" + pathlib.Path(
            config["data"]["path"]).name or config["data"]["name"],
        "train_size": train_size(config, summary), "train_accuracy": summary["train_accuracy"],
        "model": model["name"], "width": model.get("width"), "init": model.get("init", "he"),
        "method": method_of(config), "alpha": mixing_of(config)[0],
        "mix_layers": mixing_of(config)[1], "seed": config["seed"],
        "epochs": config["num_epochs"], "milestones": list(config["optimizer"]["milestones"]),
        "test_error_percent": summary["test_error_percent"],
        "best_test_error_percent": summary.get("best_test_error_percent"),
        "best_test_epoch": summary.get("best_test_epoch"),
        "val_selected_test_error_percent": None, "val_selected_epoch": None,
        "val_selected_test_nll": None, **val_selected_from_history(run),
        "test_nll": summary["test_nll"], "test_ece": summary.get("test_ece"),
        "fgsm_accuracy": summary.get("fgsm_accuracy"),
        "fgsm_epsilon": summary.get("fgsm_epsilon"), "fgsm_space": summary.get("fgsm_space"),
        "spectrum_mean_first": spectrum["first"], "spectrum_mean_rest_sum": spectrum["rest_sum"],
        "train_seconds": summary["train_s"],
        "wall_seconds": json.loads(wall.read_text())["wall_s"] if wall.exists() else None,
        "device": summary.get("device_kind", device), **semi_supervised_fields(config),
        **robustness_report.fields(summary, evaluation),
        **{key: summary[key] for key in SEPARATION_KEYS if key in summary},
    }


STUDY_COLUMNS = (  # (row key, header, digits)
    ("test_error_percent", "error % final", 2), ("best_test_error_percent", "error % best", 2),
    ("val_selected_test_error_percent", "error % val-selected", 2), ("test_nll", "NLL", 3),
    ("test_ece", "ECE", 3), ("fgsm_accuracy", "FGSM acc.", 3),
    ("spectrum_mean_first", "σ₁ (mean)", 2), ("spectrum_mean_rest_sum", "Σσ₂.. (mean)", 2),
    ("train_accuracy", "train acc.", 4), ("wall_seconds", "wall s (each)", 0),
)


CURVE_METRICS = (("test_error_percent", "test error % (final)"), ("test_nll", "test NLL"),
                 ("fgsm_accuracy", "FGSM accuracy"))  # the panels of a study's curve figures


def _cell(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def study_table(rows: list[dict[str, Any]]) -> str:
    """Mean (min–max) over seeds per (training-set size, method); columns with data only."""
    columns = [c for c in STUDY_COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    lines = ["| train images | method | seeds | epochs | " + " | ".join(h for _, h, _ in columns)
             + " |", "|---" * (4 + len(columns)) + "|"]
    groups = sorted({(r["train_size"] or 0, variant(r, rows), r["method"]) for r in rows},
                    key=lambda g: (g[0], METHOD_ORDER.index(g[2]), g[1]))
    for size, method, _ in groups:
        mine = [r for r in rows if (r["train_size"] or 0, variant(r, rows)) == (size, method)]
        cells = [_cell([r[k] for r in mine if r.get(k) is not None], d) if any(
            r.get(k) is not None for r in mine) else "—" for k, _, d in columns]
        epochs = "/".join(sorted({str(r["epochs"]) for r in mine}))
        lines.append(f"| {size or '—'} | {method} | {len(mine)} | {epochs} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def of_study(name: str, runs: list[pathlib.Path]) -> list[pathlib.Path]:
    """The runs that study NAME (scripts/study_plans.py) defines (a root may hold several studies'
    runs, e.g. the ViT's point search beside its main runs); all of them for other names."""
    import study_plans

    if name not in study_plans.STUDIES:
        return runs
    names = {run.name for run in study_plans.STUDIES[name]()}
    return [run for run in runs if run.name in names]


def beside(name: str, other: str, rows: list[dict[str, Any]], docs: pathlib.Path) -> None:
    """docs/figures/NAME_beside_OTHER.png: this study's curve and docs/results/OTHER.json's at
    the same training-set sizes, a line style per model."""
    from mmix_jax.harness import figures

    sizes = {r["train_size"] for r in rows}
    theirs = [r for r in json.loads((docs / "results" / f"{other}.json").read_text())
              if r["train_size"] in sizes]
    if not theirs:
        sys.exit(f"--beside {other}: docs/results/{other}.json has no runs at sizes {sorted(sizes)}")
    figures.data_efficiency(docs / "figures" / f"{name}_beside_{other}.png", rows + theirs,
                            CURVE_METRICS, style_key="model")


def write_study(name: str, runs: list[pathlib.Path], device: str, docs: pathlib.Path,
                other: str = "") -> str:
    """docs/results/NAME.json and docs/figures/NAME_*.png from the runs (and the curve beside
    study `other`'s); returns the tables."""
    from mmix_jax.harness import figures

    read = [(run, evaluation_of(run)) for run in runs]  # each evaluation.json read once
    pairs = sorted(((study_row(run, device, evaluation), evaluation) for run, evaluation in read),
                   key=lambda p: (p[0]["train_size"] or 0, METHOD_ORDER.index(p[0]["method"]),
                                  p[0]["seed"]))
    rows = [r for r, _ in pairs]
    (docs / "results").mkdir(parents=True, exist_ok=True)
    (docs / "results" / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (docs / "figures").mkdir(parents=True, exist_ok=True)
    if len({r["train_size"] for r in rows}) > 1:
        figures.data_efficiency(docs / "figures" / f"{name}_curve.png", rows, CURVE_METRICS)
    spectra = [(f"{r['method']} (seed {r['seed']})", (evaluation or {})["spectrum"])
               for r, evaluation in pairs if r["spectrum_mean_first"] is not None
               and r["seed"] == min(x["seed"] for x in rows)]
    if spectra:
        figures.spectra(docs / "figures" / f"{name}_spectra.png",
                        sorted(spectra, key=lambda p: METHOD_ORDER.index(p[0].split(" (")[0])))
    if other:
        beside(name, other, rows, docs)
    sizes = {r["train_size"] for r in rows}

    def label(r: dict[str, Any]) -> str:  # the study table's lines: per size and variant
        return (f"{r['train_size']} images, " if len(sizes) > 1 else "") + variant(r, rows)

    robustness_report.figures(name, pairs, docs, METHOD_ORDER, label)
    robust = robustness_report.tables(rows, METHOD_ORDER, _cell, label)
    return study_table(rows) + (f"\n{robust}" if robust else "")
