"""The robustness part of a study's results (scripts/reproduce.py --study): the row fields,
the markdown tables (mean and range over seeds per method) and the figures."""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Sequence

PREFIXES = ("deform_", "ood_", "pgd_", "rotation_")
DEFORMATIONS = ("rotate20", "rotate40", "shear", "zoom_in", "zoom_out")


def fields(summary: dict[str, Any], evaluation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The robustness scalars of a run's summary (final checkpoint), as they are named there,
    and its evaluation's rotation sweep as rotation_<angle>_accuracy / _nll."""
    found = {key: value for key, value in summary.items() if key.startswith(PREFIXES)}
    sweep = (evaluation or {}).get("rotation_sweep")
    if sweep:
        for index, angle in enumerate(sweep["angle"]):
            found[f"rotation_{angle:g}_accuracy"] = sweep["accuracy"][index]
            if "nll" in sweep:
                found[f"rotation_{angle:g}_nll"] = sweep["nll"][index]
    return found


def _table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str, int]],
           groups: list[str], cell: Callable[[list[float], int], str],
           label: Callable[[dict[str, Any]], str]) -> str:
    columns = [c for c in columns if any(r.get(c[0]) is not None for r in rows)]
    lines = ["| method | seeds | " + " | ".join(h for _, h, _ in columns) + " |",
             "|---" * (2 + len(columns)) + "|"]
    for method in groups:
        mine = [r for r in rows if label(r) == method]
        cells = [cell([r[k] for r in mine if r.get(k) is not None], d)
                 if any(r.get(k) is not None for r in mine) else "—" for k, _, d in columns]
        lines.append(f"| {method} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tables(rows: list[dict[str, Any]], methods: list[str],
           cell: Callable[[list[float], int], str],
           label: Callable[[dict[str, Any]], str] = lambda row: row["method"]) -> str:
    """Three markdown tables: deformations, out-of-distribution detection, PGD, a line per
    `label` (the method, or the method with what the study varies, e.g. a ViT's mix points),
    by training-set size, then in the order of `methods`; empty when the runs have no robustness metrics."""
    rows = [r for r in rows if any(k.startswith(PREFIXES) for k in r)]
    if not rows:
        return ""
    groups = sorted({label(r) for r in rows}, key=lambda g: min(
        (r.get("train_size") or 0, methods.index(r["method"]), g) for r in rows if label(r) == g))
    deform = [("test_accuracy_clean", "clean", 3)] + [
        (f"deform_{name}_accuracy", name, 3) for name in DEFORMATIONS] + [
        (f"deform_{name}_nll", f"NLL {name}", 2) for name in ("rotate40", "zoom_out")]
    sets = sorted({k.split("_", 1)[1].rsplit("_msp_auroc", 1)[0] for r in rows for k in r
                   if k.startswith("ood_") and k.endswith("_msp_auroc")})
    detect = []
    for name in sets:
        detect += [(f"ood_{name}_msp_auroc", f"{name} AUROC (MSP)", 3),
                   (f"ood_{name}_energy_auroc", f"{name} AUROC (energy)", 3),
                   (f"ood_{name}_msp_fpr95", f"{name} FPR95 (MSP)", 3),
                   (f"ood_{name}_mean_confidence", f"{name} mean conf.", 3)]
    steps = sorted({int(k.rsplit("_", 1)[1]) for r in rows for k in r
                    if k.startswith("pgd_accuracy_")})
    angles = sorted({float(k.split("_")[1]) for r in rows for k in r
                     if k.startswith("rotation_") and k.endswith("_accuracy")})
    rotate = [(f"rotation_{a:g}_accuracy", f"{a:g}°", 3) for a in angles] + [
        (f"rotation_{a:g}_nll", f"NLL {a:g}°", 2) for a in angles if a]
    attack = [("pgd_clean_accuracy", "clean (subset)", 3), ("fgsm_accuracy", "FGSM", 3)] + [
        (f"pgd_accuracy_{n}", f"PGD-{n}", 3) for n in steps]
    for r in rows:
        r.setdefault("test_accuracy_clean", 1.0 - r["test_error_percent"] / 100.0)
    return ("Deformations (accuracy; NLL where named):\n\n"
            + _table(rows, deform, groups, cell, label)
            + ("\nRotations of the test set (accuracy, then NLL):\n\n"
               + _table(rows, rotate, groups, cell, label) if angles else "")
            + "\nOut-of-distribution detection:\n\n" + _table(rows, detect, groups, cell, label)
            + "\nAttacks (accuracy):\n\n" + _table(rows, attack, groups, cell, label))


def figures(name: str, pairs: list[tuple[dict[str, Any], dict[str, Any] | None]],
            docs: pathlib.Path, methods: list[str],
            label: Callable[[dict[str, Any]], str] = lambda row: row["method"]) -> None:
    """docs/figures/NAME_reliability.png, _rotation.png and _confidence.png from the runs'
    (row, evaluation.json) pairs, a line (or panel) per `label` as in `tables` (the reliability
    and confidence panels: the lowest seed of each)."""
    from mmix_jax.harness import figures as draw

    evaluations = [(r, e) for r, e in pairs if e and ("rotation_sweep" in e or "ood" in e)]
    if not evaluations:
        return
    order = sorted(evaluations, key=lambda p: (
        p[0].get("train_size") or 0, methods.index(p[0]["method"]), label(p[0]), p[0]["seed"]))
    first: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for row, evaluation in order:
        first.setdefault(label(row), (row, evaluation))
    out = docs / "figures"
    draw.reliability(out / f"{name}_reliability.png",
                     [(f"{m} (seed {r['seed']})", e["reliability"]) for m, (r, e) in first.items()
                      if "reliability" in e])
    sweeps = [(r["method"], label(r), e["rotation_sweep"]) for r, e in order
              if "rotation_sweep" in e]
    if sweeps:
        draw.rotation_accuracy(out / f"{name}_rotation.png", sweeps)
    histograms = [(f"{m} (seed {r['seed']})", e["confidence_histogram"])
                  for m, (r, e) in first.items() if "confidence_histogram" in e]
    if histograms:
        draw.confidence_histograms(out / f"{name}_confidence.png", histograms)
