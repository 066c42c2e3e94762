"""The three methods by name: the one table the configs' tests, the benchmark and reproduce use.

The paper's supervised settings (Verma et al. 2019, Sec. 5.1 and the authors' README): ERM;
Input Mixup, α = 1 at the input; Manifold Mixup, α = 2 at mix points {0, 1, 2} (the input and
the outputs of the first two stages).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Method:
    title: str                      # as tables and figures print it
    alpha: float
    mix_layers: tuple[int, ...]


PAPER_METHODS: dict[str, Method] = {
    "erm": Method("ERM", 0.0, ()),
    "input": Method("Input Mixup", 1.0, (0,)),
    "manifold": Method("Manifold Mixup", 2.0, (0, 1, 2)),
}
TITLES: tuple[str, ...] = tuple(m.title for m in PAPER_METHODS.values())


# Semi-supervised runs (config.semi_supervised): the labelled-only baseline, the paper's
# semi-supervised Manifold Mixup (targets from the same network), ICT (mean-teacher targets).
SEMI_SUPERVISED_TITLES: tuple[str, ...] = ("Labelled only", "SSL Manifold Mixup", "ICT")

# ICT's own run settings (its code's defaults): no dropout, no Nesterov, weight decay 1e-4, and
# the cosine learning rate reaching zero at 450/400 of the run.
ICT_RUN = dict(dropout_rate=0.0, nesterov=False, weight_decay=1e-4, rampdown_ratio=450 / 400)


def semi_supervised_title(weight_max: float, targets: str) -> str:
    if weight_max <= 0:
        return "Labelled only"
    return "ICT" if targets == "mean_teacher" else "SSL Manifold Mixup"


def uses_ict_settings(config: Mapping[str, Any]) -> bool:
    """Whether a semi-supervised run (a config as a dict) trains with ICT's run settings
    (ICT_RUN: no dropout, no Nesterov, weight decay 1e-4)."""
    optimizer = config["optimizer"]
    return (config["model"].get("dropout_rate", 0.0) == ICT_RUN["dropout_rate"]
            and optimizer.get("nesterov") == ICT_RUN["nesterov"]
            and optimizer.get("weight_decay") == ICT_RUN["weight_decay"])


def semi_supervised_label(config: Mapping[str, Any]) -> str:
    """The method's title, marked "(ICT's settings)" for a run other than ICT that uses ICT's
    run settings and labelled term: the controls that separate ICT's recipe from its
    consistency term ("(ICT's settings, step schedule)" without its cosine ramp-down); and
    ", targets differentiated" with semi_supervised.target_gradient "through"."""
    ssl = config["semi_supervised"]
    title = semi_supervised_title(ssl["unsupervised_weight_max"], ssl["targets"])
    if title != "ICT" and uses_ict_settings(config):
        cosine = config["optimizer"].get("schedule") == "cosine"
        title += " (ICT's settings)" if cosine else " (ICT's settings, step schedule)"
    if ssl["unsupervised_weight_max"] > 0 and ssl.get("target_gradient") == "through":
        title += ", targets differentiated"
    return title


def title_of(alpha: float, mix_layers: Sequence[int]) -> str:
    """ERM (no mixing), Input Mixup (the input only) or Manifold Mixup (any hidden point)."""
    if not mix_layers or alpha <= 0:
        return "ERM"
    return "Input Mixup" if list(mix_layers) == [0] else "Manifold Mixup"


__all__ = ["ICT_RUN", "Method", "PAPER_METHODS", "SEMI_SUPERVISED_TITLES", "TITLES",
           "semi_supervised_label", "semi_supervised_title", "title_of", "uses_ict_settings"]
