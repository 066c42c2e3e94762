"""How flat a network's class representations are (the paper's Sec. 3.2, and measures that
compare across data sets).

For each class c, take the matrix H_c [n_c, d] of its examples' representations (e.g. the
bottleneck's outputs) and its singular values σ_1 ≥ σ_2 ≥ ... . Then, averaged over classes:

- the paper's measure: σ_1 and Σ_{i>1} σ_i of the *uncentred* H_c ("flatter": a smaller sum);
- first_share = σ_1 / Σ_i σ_i, and effective_rank = exp(H(p)), p_i = σ_i / Σ_j σ_j (Roy &
  Vetterli 2007): both scale-free, so a network that merely shrinks its features is not
  called flatter; effective_rank is 1 for a rank-1 class and d for an isotropic one;
- each on every example of the class, or on `per_class` examples drawn by seed (singular
  values grow with n_c, so only equal counts compare across data sets);
- each uncentred or *centred* (the class mean removed first): the uncentred σ_1 is mostly the
  class mean's norm times √n_c, so the centred spectrum is the spread around the mean alone.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

MEASURES = ("first", "rest_sum", "first_share", "effective_rank")


def spectrum_measures(singular_values: np.ndarray) -> dict[str, float]:
    """σ_1, Σ_{i>1} σ_i, σ_1/Σσ and exp(entropy of σ/Σσ) of one class's singular values."""
    values = np.sort(np.asarray(singular_values, np.float64))[::-1]
    total = float(values.sum())
    if total <= 0.0:
        raise ValueError("all singular values are 0: the class's representations are all 0.")
    shares = values / total
    positive = shares[shares > 0]
    return {"first": float(values[0]), "rest_sum": float(values[1:].sum()),
            "first_share": float(values[0] / total),
            "effective_rank": float(np.exp(-np.sum(positive * np.log(positive))))}


def class_members(representations: np.ndarray, labels: np.ndarray, label: int,
                  per_class: Optional[int], rng: np.random.Generator) -> np.ndarray:
    """The rows of class `label`, or `per_class` of them drawn without replacement."""
    members = representations[labels == label]
    if per_class is None:
        return members
    if members.shape[0] < per_class:
        raise ValueError(f"class {label} has {members.shape[0]} examples, fewer than "
                         f"per_class = {per_class}: choose a smaller per_class.")
    return members[np.sort(rng.choice(members.shape[0], per_class, replace=False))]


def flattening(representations: np.ndarray, labels: np.ndarray, num_classes: int, *,
               per_class: Optional[int] = None, centred: bool = False,
               seed: int = 0) -> dict[str, Any]:
    """Every measure per class (classes absent from `labels` skipped) and its mean over classes.

    `representations` [N, ...] are flattened per example; `per_class` examples of each class
    are drawn with `seed` (every example if None); `centred` removes each class's mean."""
    flat = np.asarray(representations, np.float64).reshape(representations.shape[0], -1)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    per_class_measures = []
    for label in range(num_classes):
        if not np.any(labels == label):
            continue
        members = class_members(flat, labels, label, per_class, rng)
        if centred:
            members = members - members.mean(axis=0, keepdims=True)
        per_class_measures.append(spectrum_measures(np.linalg.svd(members, compute_uv=False)))
    means = {f"mean_{name}": float(np.mean([m[name] for m in per_class_measures]))
             for name in MEASURES}
    return {**means, "classes": per_class_measures, "examples_per_class": per_class,
            "centred": centred}


def flattening_table(representations: np.ndarray, labels: np.ndarray, num_classes: int, *,
                     per_class: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The four variants: every example or `per_class` of each class, uncentred or centred."""
    table = {}
    for count in (None, per_class):
        for centred in (False, True):
            name = ("all" if count is None else f"n{count}") + ("_centred" if centred else "")
            table[name] = flattening(representations, labels, num_classes, per_class=count,
                                     centred=centred, seed=seed)
    return table


__all__ = ["MEASURES", "class_members", "flattening", "flattening_table", "spectrum_measures"]
