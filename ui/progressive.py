"""Progressive results kept per browser session, so moving the sample count reuses them.

A progressive method (RISE) yields accumulated sums every ``step`` samples, and every
prefix is a valid smaller run. The session keeps those sums for the current key (model,
image, every parameter except the count): a smaller count is a prefix, read back without
computing; a larger one resumes from the last sums. A new key replaces the old entry, so
a session holds one accumulation per method name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable

import numpy as np
import streamlit as st


@dataclass
class Accumulation:
    """Cumulative sums after every ``step`` samples, for one setting of everything but the count."""
    step: int
    sums: list[np.ndarray] = field(default_factory=list)  # cumulative, after (k + 1)·step samples

    @property
    def n_done(self) -> int:
        """Samples accumulated so far."""
        return self.step * len(self.sums)

    def sums_at(self, n: int) -> np.ndarray:
        """The accumulated sums after ``n`` samples (a multiple of ``step``, already computed)."""
        return self.sums[n // self.step - 1]

    def counts(self, upto: int, points: int = 40) -> list[int]:
        """At most ``points`` sample counts up to ``upto`` at which sums are stored, ``upto`` last."""
        k = upto // self.step
        picked = np.unique(np.linspace(1, k, num=min(points, k)).round().astype(int))
        return [int(i) * self.step for i in picked]


def accumulation(name: str, key: Hashable, step: int) -> Accumulation:
    """The session's accumulation for ``key``; another key starts afresh."""
    slot = f"progressive.{name}"
    kept = st.session_state.get(slot)
    if kept is None or kept[0] != key or kept[1].step != step:
        kept = (key, Accumulation(step))
        st.session_state[slot] = kept
    return kept[1]
