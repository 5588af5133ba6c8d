"""The tables of the IG and RIG page, as pandas frames built from the library's results."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from xai_core import rig
from xai_core.model_handle import LoadedModel

AREA_KINDS = {"ig_important": "IG ≥ τ·max", "rig": "RIG"}


def accuracy_frame(rows: list[dict]) -> pd.DataFrame:
    """``rig.accuracy_table`` with networks as columns and (split, class) rows: fits half the page."""
    table = pd.DataFrame(rows).set_index("network")
    table.index.name = None
    table.columns = pd.MultiIndex.from_tuples([tuple(c.split(" ", 1)) for c in table.columns])
    return table.T


def area_frame(names: Sequence[str], inputs: Sequence[tuple[str, torch.Tensor]],
               explanations: Sequence[rig.RigExplanation]) -> pd.DataFrame:
    """Per image: the share (and number) of pixels kept by IG ≥ τ·max and by the RIG region, per class."""
    rows = []
    for (image_name, _), e in zip(inputs, explanations):
        pixels = e.region[0].size
        rows.append({"image": image_name, **{
            f"{AREA_KINDS[kind]} {names[i]}": f"{100 * float(e.area[kind][i]):.2f} % "
                                             f"({round(float(e.area[kind][i]) * pixels)} px)"
            for kind in AREA_KINDS for i in range(2)}})
    return pd.DataFrame(rows).set_index("image")


def occlusion_frame(model: LoadedModel, names: Sequence[str], inputs: Sequence[tuple[str, torch.Tensor]],
                    explanations: Sequence[rig.RigExplanation]) -> pd.DataFrame:
    """The paper's Table 3 layout: per image, logits with the RIG region blacked out (row .1, with the
    original logits beside them) and with an equally large top-IG region blacked out (row .2)."""
    rows = {}
    for index, ((_, x), e) in enumerate(zip(inputs, explanations), start=1):
        logits = rig.occlusion_logits(model, x, e.classes, e.occlusion_region, e.ig_scores)
        rows[f"{index}.1 (RIG region)"] = [*logits[1], *logits[0]]
        rows[f"{index}.2 (same area, IG)"] = [*logits[2], np.nan, np.nan]
    columns = [f"{names[0]} (occl.)", f"{names[1]} (occl.)", f"{names[0]} (orig.)", f"{names[1]} (orig.)"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def side_by_side(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Tables of several architectures as one frame of text under one column level per architecture
    (numbers to 3 decimals, "—" for a missing one: the data grid shows a missing number as "None",
    whatever the Styler's na_rep says)."""
    def text(value: object) -> str:
        if isinstance(value, str):
            return value
        return "—" if pd.isna(value) else f"{value:.3f}"

    return pd.concat(tables, axis=1).map(text)


def part_share_frame(reports: dict[str, dict]) -> pd.DataFrame:
    """``rig.part_share_report`` of each architecture, one column each (its per-image rows left out)."""
    return pd.DataFrame({label: {k: v for k, v in report.items() if k != "per_image"}
                         for label, report in reports.items()}).astype(str)
