"""Summaries of per-image scores: the mean and a seeded 95 % percentile bootstrap interval.

The percentile bootstrap (Efron & Tibshirani 1993, ch. 13): draw ``resamples`` samples of the
``n`` finite scores with replacement, take each one's mean, and report the 2.5 % and 97.5 %
quantiles of those means. The draws come from ``numpy.random.default_rng(seed)``, so the same
scores in the same order always give the same interval. NaN scores (a metric undefined on an
image, e.g. an empty mask) are left out, and ``n`` counts the scores that remain.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
_CHUNK_ELEMENTS = 4_000_000  # resampled scores held at once (32 MB), whatever n


def bootstrap_interval(values: Sequence[float] | np.ndarray, *, confidence: float = CONFIDENCE,
                       resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of the finite ``values``; (nan, nan) when none."""
    scores = np.asarray(values, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if len(scores) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_ELEMENTS // len(scores))
    means = np.concatenate([scores[rng.integers(0, len(scores), (min(per_chunk, resamples - start), len(scores)))]
                            .mean(axis=1) for start in range(0, resamples, per_chunk)])
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return (float(low), float(high))


def summarise(values: Sequence[float] | np.ndarray, *, confidence: float = CONFIDENCE,
              resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, float | int]:
    """``{mean, ci_low, ci_high, n}`` of the finite ``values``."""
    scores = np.asarray(values, dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    low, high = bootstrap_interval(finite, confidence=confidence, resamples=resamples, seed=seed)
    return {"mean": float(finite.mean()) if len(finite) else math.nan, "ci_low": low, "ci_high": high,
            "n": int(len(finite))}
