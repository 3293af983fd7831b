"""Networks: one registry, shared blocks, one file per family.

    from mrenhance.models import create_model, list_models
    model = create_model("mdcsrn-b4u4")              # paper defaults
    model = create_model("mdcsrn-b4u4", growth=8)    # override, checked against the signature

Importing this package registers every network: DCSRN/mDCSRN (:mod:`.dense`), 3D FSRCNN
(:mod:`.fsrcnn`), 3D SRResNet (:mod:`.srresnet`) and the WGAN-GP critic (:mod:`.critic`).
"""

from __future__ import annotations

from mrenhance.models import critic, dense, fsrcnn, srresnet  # noqa: F401  (they register)
from mrenhance.models.registry import (
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    register_model,
)

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]
