"""Networks: one registry, shared blocks, one file per family.

    from mrenhance.models import create_model, list_models
    model = create_model("mdcsrn-b4u4")              # paper defaults
    model = create_model("mdcsrn-b4u4", growth=8)    # override, checked against the signature

Importing this package registers every network: each module of the package that
decorates a class with ``@register_model`` registers it on import, and every module is
imported here (e.g. DCSRN/mDCSRN in :mod:`.dense`, 3D FSRCNN in :mod:`.fsrcnn`, 3D
SRResNet in :mod:`.srresnet`, the WGAN-GP critic in :mod:`.critic`). Adding a family is
adding a file.
"""

from __future__ import annotations

import importlib as _importlib
import pkgutil as _pkgutil

from mrenhance.models.registry import (
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    register_model,
)

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]

# modules that hold infrastructure, not networks
_NOT_FAMILIES = {"registry", "blocks", "card", "weights", "complexity", "fused"}
for _info in _pkgutil.iter_modules(__path__):
    if _info.name not in _NOT_FAMILIES and not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")
