"""Mechanistic ground-truth PK/PD models from published population analyses.

``get_model(name)`` returns the drug model; ``DRUGS`` lists the names. Each model's
module docstring cites its source and parameter values.
"""

from __future__ import annotations

import importlib

from vae_simulator.groundtruth.base import DrugModel, ExposureTarget, ResidualError

#: drug name -> (module, class) of its ground-truth model.
_REGISTRY: dict[str, tuple[str, str]] = {
    "vancomycin": ("vae_simulator.groundtruth.vancomycin", "Vancomycin"),
    "phenytoin": ("vae_simulator.groundtruth.phenytoin", "Phenytoin"),
    "mycophenolate": ("vae_simulator.groundtruth.mycophenolate", "Mycophenolate"),
    "theophylline": ("vae_simulator.groundtruth.theophylline", "Theophylline"),
    "pembrolizumab": ("vae_simulator.groundtruth.pembrolizumab", "Pembrolizumab"),
    "paclitaxel": ("vae_simulator.groundtruth.paclitaxel", "Paclitaxel"),
    "carboplatin": ("vae_simulator.groundtruth.carboplatin", "Carboplatin"),
}
DRUGS: tuple[str, ...] = tuple(_REGISTRY)
#: Drugs dosed alone (precision dosing); the others are the combination pair.
SINGLE_DRUGS: tuple[str, ...] = ("vancomycin", "phenytoin", "mycophenolate", "theophylline", "pembrolizumab")
COMBINATION_DRUGS: tuple[str, ...] = ("paclitaxel", "carboplatin")


def get_model(name: str) -> DrugModel:
    """The ground-truth model of drug ``name`` (one of :data:`DRUGS`)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown drug {name!r}; known drugs: {', '.join(DRUGS)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)()


__all__ = [
    "COMBINATION_DRUGS",
    "DRUGS",
    "SINGLE_DRUGS",
    "DrugModel",
    "ExposureTarget",
    "ResidualError",
    "get_model",
]
