"""What made a view: model, weights, image, target, method and parameters, library versions, date.

Every export (PNG caption, NPZ, report item) carries this dict, so a figure shown in a meeting says
which model, image and settings produced it. Values are plain strings: they go into JSON, captions
and HTML (escaped there) unchanged.
"""
from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from importlib import metadata
from typing import Any, Mapping

_PACKAGES = ("xai-lab", "torch", "torchvision", "streamlit")
_CAPTION_KEYS = ("model", "weights", "image", "target", "method")


@lru_cache(maxsize=None)  # reading package metadata scans site-packages: once per process
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v) for v in value)
    return str(value)


def provenance(selection, *, method: str | None = None, params: Mapping[str, Any] | None = None,
               **extra: Any) -> dict[str, str]:
    """The provenance of a view drawn from ``selection`` (a ``ui.sidebar.Selection``).

    ``params`` become one ``"param: k"`` entry each; ``extra`` entries (say ``targets=...``,
    ``models=...``) are added as they are, after the selection's, and override them.
    """
    model = selection.model
    card = model.card()
    checkpoint = selection.model_key.split("|")[1] if selection.model_key.count("|") >= 3 else "pretrained"
    prov = {
        "model": str(card["name"]),
        "architecture": str(card["architecture"]),
        "weights": str(card["weights"]) + ("" if checkpoint == "pretrained" else f" (checkpoint {checkpoint[:12]})"),
        "image": selection.image_label,
        "image hash": selection.image_hash,
        "target": f"{selection.target_name} ({selection.target})",
        "device": selection.device,
    }
    if getattr(selection, "edits", ""):
        prov["edits"] = selection.edits  # the What-if page's edit list that made the served image
    if method is not None:
        prov["method"] = method
    for key, value in (params or {}).items():
        prov[f"param: {key}"] = _format(value)
    prov.update({key.replace("_", " "): _format(value) for key, value in extra.items()})
    prov.update({f"version: {package}": _version(package) for package in _PACKAGES})
    prov["date (UTC)"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return prov


def caption_lines(prov: Mapping[str, str]) -> list[str]:
    """Short lines for an image caption: model and weights, image, target and method, parameters,
    version and date (the full dict stays in the NPZ and the report)."""
    head = [f"{key}: {prov[key]}" for key in _CAPTION_KEYS if key in prov]
    params = [f"{key.removeprefix('param: ')} = {value}" for key, value in prov.items() if key.startswith("param: ")]
    lines = [" · ".join(head[:2]), " · ".join(head[2:])]
    if params:
        lines.append("parameters: " + ", ".join(params))
    if "version: xai-lab" in prov:
        lines.append(f"xai-lab {prov['version: xai-lab']} · {prov.get('date (UTC)', '')} UTC")
    return [line for line in lines if line]
