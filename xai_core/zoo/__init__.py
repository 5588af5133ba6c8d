"""The table of model families behind ``xai_core.models``.

Each family is one module answering ``family.ModelFamily``'s questions; registering a new
one is a line in ``FAMILIES``. The order of the table is the order of the model picker.
"""
from __future__ import annotations

from ..errors import ParameterError
from . import embedded_family, torchvision_family
from .family import ModelFamily

FAMILIES: tuple[ModelFamily, ...] = (
    embedded_family.FAMILY,
    torchvision_family.FAMILY,
)



def model_names() -> list[str]:
    """Every registered architecture name, family by family."""
    return [name for family in FAMILIES for name in family.names]


def family_of(name: str) -> ModelFamily:
    """The family that builds ``name``; ``ParameterError`` for a name no family has."""
    for family in FAMILIES:
        if name in family.names:
            return family
    raise ParameterError(f"Unknown model '{name}'; choose one of {', '.join(model_names())}.")


MODEL_NAMES: list[str] = model_names()
