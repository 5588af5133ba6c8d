"""How the support networks and RIG do: the paper's accuracy table, and on the embedded dataset,
whether RIG's region lands on the discriminative part."""
from __future__ import annotations

import numpy as np
import torch

from .. import dataset
from ..engine import Engine, Progress
from ..errors import ParameterError
from ..model_handle import LoadedModel
from .data import TrainingData
from .defaults import DEFAULT_REPORT_N, DEFAULT_REPORT_SEED, DEFAULT_STEPS, DEFAULT_TAU
from .explain import occlusion_logits, rig_explain, top_region
from .targets import batched_logits
from .training import SupportNetworks


@torch.no_grad()
def accuracy_table(model: LoadedModel, supports: SupportNetworks, train: TrainingData, val: TrainingData) -> list[dict]:
    """The paper's Table 1 layout: per-class and total accuracy on train and validation, one row
    per network. A prediction is the larger of the pair's two logits (the paper's classifier is binary)."""
    a, b = train.classes
    engine = Engine(model.device)
    rows = []
    for name, module in supports.modules(model):
        row: dict = {"network": name}
        for split, data in (("train", train), ("val", val)):
            logits = batched_logits(module, data.images, engine)
            predicted = torch.where(logits[:, b] > logits[:, a], b, a)
            hit = predicted == data.labels
            for c in (a, b):
                row[f"{split} {model.categories[c]}"] = 100 * float(hit[data.labels == c].float().mean())
            row[f"{split} total"] = 100 * float(hit.float().mean())
        rows.append(row)
    return rows


def part_share_report(model: LoadedModel, supports: SupportNetworks, *, seed: int = DEFAULT_REPORT_SEED,
                      n: int = DEFAULT_REPORT_N, tau: float = DEFAULT_TAU, steps: int = DEFAULT_STEPS,
                      engine: Engine | None = None, progress: Progress | None = None) -> dict:
    """On ``n`` freshly generated embedded images of the pair (``seed`` unseen in training): how
    much attribution falls inside the discriminative part, for IG and for RIG, each image
    explained for its own class.

    ``ig_share``/``rig_share``: positive attribution inside ``part_mask`` over all positive
    attribution (mean over images; RIG only over images whose region is not empty);
    ``*_precision``: share of the selected pixels that lie on the part — RIG region vs the
    equally large top plain-IG region; ``part_area``: the part's share of the image (chance level);
    ``margin_*``: own-class logit minus the other class's logit — original, with the RIG regions
    blacked out, with an equally large top-IG region blacked out (``occlusion_logits``);
    ``flipped_*``: share of images whose pair decision changes under that occlusion.
    """
    if n < 1:
        raise ParameterError("The part-share report needs at least one held-out image.")
    engine = engine or Engine(model.device)
    rows = []
    for found, sample in enumerate(dataset.samples(seed, n, classes=list(supports.classes)), start=1):
        x = dataset.normalize(sample.image[None], model.mean, model.std)[0]
        explanation = rig_explain(model, x, supports, tau=tau, steps=steps, engine=engine)
        own = supports.classes.index(sample.label)
        part = np.asarray(sample.part_mask, dtype=bool)
        ig_positive = np.clip(explanation.ig[own], 0, None)
        rig_map = explanation.rig[own]
        region = explanation.region[own]
        ig_top = top_region(ig_positive, int(region.sum()))
        logits = occlusion_logits(model, x, supports.classes, explanation.occlusion_region, explanation.ig_scores)
        margins = logits[:, own] - logits[:, 1 - own]
        rows.append({
            "margin_original": float(margins[0]), "margin_rig_occluded": float(margins[1]),
            "margin_ig_occluded": float(margins[2]),
            "flipped_rig": float((margins[1] < 0) != (margins[0] < 0)),
            "flipped_ig": float((margins[2] < 0) != (margins[0] < 0)),
            "ig_share": float(ig_positive[part].sum() / max(ig_positive.sum(), 1e-12)),
            "rig_share": float(rig_map[part].sum() / rig_map.sum()) if rig_map.sum() > 0 else np.nan,
            "rig_precision": float(part[region].mean()) if region.any() else np.nan,
            "ig_precision": float(part[ig_top].mean()) if region.any() else np.nan,
            "rig_area": float(region.mean()),
            "part_area": float(part.mean()),
        })
        if progress is not None:
            progress(found / n, f"held-out image {found}/{n}")
    table = {key: np.array([r[key] for r in rows]) for key in rows[0]}
    return {"n": n, "seed": seed, "tau": tau, "empty_rig_regions": int(np.isnan(table["rig_share"]).sum()),
            **{f"mean_{key}": float(np.nanmean(values)) if not np.isnan(values).all() else None
               for key, values in table.items()},
            "per_image": rows}
