"""The table of model families behind ``xai_core.models``.

Each family is one module answering ``family.ModelFamily``'s questions; registering a new
one is a line in ``FAMILIES``. The order of the table is the order of the model picker.
A family with a ``prefix`` (timm's ``"timm:"``) builds every name that starts with it: its
names are open-ended, and its ``names`` list only some of them (timm's: those with cached weights).
"""
from __future__ import annotations

from ..errors import ParameterError
from . import embedded_family, timm_family, torchvision_family
from .family import ModelFamily

FAMILIES: tuple[ModelFamily, ...] = (
    embedded_family.FAMILY,
    torchvision_family.FAMILY,
    timm_family.FAMILY,
)


def model_names() -> list[str]:
    """Every registered architecture name, family by family."""
    return [name for family in FAMILIES for name in family.names]


def family_of(name: str) -> ModelFamily:
    """The family that builds ``name``; ``ParameterError`` for a name no family has."""
    for family in FAMILIES:
        if name in family.names:
            return family
    prefixed = [family for family in FAMILIES if family.prefix]
    for family in prefixed:
        if name.startswith(family.prefix):  # the family itself says whether it knows the rest of the name
            return family
    open_ended = "".join(f", or {family.prefix}NAME" for family in prefixed)
    raise ParameterError(f"Unknown model '{name}'; choose one of {', '.join(model_names())}{open_ended}.")


MODEL_NAMES: list[str] = model_names()
