"""Out-of-distribution detection from a classifier's outputs: scores, AUROC, FPR at 95 % TPR.

A detector flags an input as out-of-distribution when its score is low. Two scores:
- "msp": the maximum softmax probability (Hendrycks & Gimpel 2017);
- "energy": logsumexp of the logits, the negative free energy (Liu et al. 2020).

AUROC is P(score_in > score_out) + ½·P(score_in = score_out) over all in/out pairs (the
Mann–Whitney statistic with mid-ranks for ties). FPR at 95 % TPR: the threshold t is the
largest score with at least 95 % of the in-distribution scores ≥ t; the FPR is the fraction of
out-of-distribution scores ≥ t.

Out-of-distribution sets (`eval.ood_sets`, each named by a string):
- "uniform": every pixel independently uniform over 0..255;
- "gaussian": every pixel N(0.5, 1) in [0, 1] units, clipped to [0, 1], then quantised to
  uint8 (as Hendrycks et al. 2019 "Gaussian" noise);
- "npz:PATH": the images of a .npz file as `data.path` reads them (labels unused);
- "tfds:NAME" or "tfds:NAME:SPLIT": a TFDS data set's split (default "test"), prepared in
  `data.data_dir` (downloaded if needed; no manual_dir).
Noise sets have as many images as the test split (at most `examples`), from (seed, name).
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np

from mmix_jax.data.npz_source import read_npz
from mmix_jax.errors import ConfigError, DataError
from mmix_jax.evaluation.evaluate import log_softmax64

NOISE = ("uniform", "gaussian")
SCORES = ("msp", "energy")


def scores(logits: np.ndarray) -> dict[str, np.ndarray]:
    """Each score per example (float64), higher meaning more in-distribution."""
    logits = np.asarray(logits, np.float64)
    log_probs = log_softmax64(logits)
    return {"msp": np.exp(log_probs.max(axis=-1)),
            "energy": logits[:, 0] - log_probs[:, 0]}  # log Σ exp(logits), the same every class


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """P(in > out) + ½·P(in = out): the area under the ROC curve of in- vs out-of-distribution."""
    in_scores, out_scores = np.ravel(in_scores), np.ravel(out_scores)
    if not in_scores.size or not out_scores.size:
        raise ValueError("AUROC needs at least one in- and one out-of-distribution score.")
    ranks = midranks(np.concatenate([in_scores, out_scores]))
    n_in, n_out = in_scores.size, out_scores.size
    mann_whitney = ranks[:n_in].sum() - n_in * (n_in + 1) / 2.0
    return float(mann_whitney / (n_in * n_out))


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = 0.95) -> float:
    """The fraction of out-of-distribution scores at or above the threshold that keeps at
    least `tpr` of the in-distribution scores (see the module docstring)."""
    descending = np.sort(np.ravel(in_scores))[::-1]
    threshold = descending[max(math.ceil(tpr * descending.size) - 1, 0)]
    return float(np.mean(np.ravel(out_scores) >= threshold))


def detection_metrics(in_logits: np.ndarray, out_logits: np.ndarray) -> dict[str, float]:
    """AUROC and FPR at 95 % TPR per score, and the mean confidence (MSP) on each set."""
    inside, outside = scores(in_logits), scores(out_logits)
    metrics = {"mean_confidence": float(outside["msp"].mean()),
               "in_mean_confidence": float(inside["msp"].mean())}
    for name in SCORES:
        metrics[f"{name}_auroc"] = auroc(inside[name], outside[name])
        metrics[f"{name}_fpr95"] = fpr_at_tpr(inside[name], outside[name])
    return metrics


def confidence_histogram(logits: np.ndarray, bins: int = 20) -> list[int]:
    """Counts of the maximum softmax probability in `bins` equal bins of [0, 1]."""
    counts, _ = np.histogram(scores(logits)["msp"], bins=bins, range=(0.0, 1.0))
    return counts.tolist()


def noise_images(kind: str, count: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """`count` uint8 noise images of `shape` ("uniform" or "gaussian"), from (seed, kind)."""
    rng = np.random.default_rng([seed, zlib.crc32(kind.encode())])
    if kind == "uniform":
        return rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
    if kind == "gaussian":
        pixels = np.clip(rng.normal(0.5, 1.0, size=(count, *shape)), 0.0, 1.0)
        return np.round(pixels * 255.0).astype(np.uint8)
    raise ConfigError(f"eval.ood_sets: unknown noise {kind!r}; choose one of {NOISE}.")


def load_images(name: str, *, shape: tuple[int, ...], count: int, seed: int,
                data_dir: str = "") -> np.ndarray:
    """The uint8 images [N, *shape] of the out-of-distribution set `name` (module docstring);
    DataError naming the set when it cannot be read or its images do not have the model's
    input shape. A real set is read once per process (cached)."""
    if name in NOISE:
        return noise_images(name, count, shape, seed)
    images = _real_images(name, data_dir)[:count]
    if tuple(images.shape[1:]) != tuple(shape):
        raise DataError(
            f"eval.ood_sets entry {name!r}: its images are {list(images.shape[1:])} but the model "
            f"takes {list(shape)}. Use a set of the same height, width and channels (resize or "
            "convert it into an .npz first), or drop it from eval.ood_sets.")
    return images


def check_name(name: str) -> None:
    """ConfigError unless `name` is a noise or 'npz:PATH' / 'tfds:NAME[:SPLIT]'."""
    kind, _, rest = name.partition(":")
    if name not in NOISE and not (kind in ("npz", "tfds") and rest):
        raise ConfigError(f"config.eval.ood_sets = {name!r} is invalid: each entry one of "
                          f"{NOISE}, 'npz:PATH' or 'tfds:NAME[:SPLIT]'.")


@functools.lru_cache(maxsize=8)
def _real_images(name: str, data_dir: str) -> np.ndarray:
    check_name(name)
    kind, _, rest = name.partition(":")
    try:
        if kind == "npz":
            train, test = read_npz(rest)
            images = train.images if test is None else np.concatenate([train.images,
                                                                       test.images])
        else:
            from mmix_jax.data import tfds_source
            tfds_name, _, split = rest.partition(":")
            builder = tfds_source.prepare(tfds_name, data_dir)
            images = tfds_source.read_split(builder, split or "test").images
    except DataError as error:
        raise DataError(f"eval.ood_sets entry {name!r}: {error}") from None
    except Exception as error:  # TFDS: no network, unknown name, a failed preparation
        raise DataError(f"eval.ood_sets entry {name!r} could not be read ({type(error).__name__}: "
                        f"{error}). Offline, give the images as 'npz:PATH', or drop the entry "
                        "(--config.eval.ood_sets=\"('uniform', 'gaussian')\").") from None
    images.flags.writeable = False
    return images


__all__ = ["NOISE", "SCORES", "auroc", "check_name", "confidence_histogram", "detection_metrics",
           "fpr_at_tpr", "load_images", "midranks", "noise_images", "scores"]
