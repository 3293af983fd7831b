"""One model card: what a weights file is, how to feed it, how it was made and measured.

Every ``<stem>.safetensors`` has a ``<stem>.json`` beside it holding a :class:`ModelCard`.
Training writes it, :mod:`mrenhance.shipping` adds held-out metrics and provenance,
``mrenhance enhance`` and ``mrenhance evaluate`` read it; nothing else defines these keys.

Schema (JSON object; unknown top-level keys are kept as ``extra``)::

    name            str                 the file stem, e.g. "mdcsrn-b4u4"
    task            str                 a registered task, e.g. "sr_t1"
    architecture    {"name", "config"}  how :func:`mrenhance.models.create_model` rebuilds it
    parameters      int                 trainable parameter count
    sha256          str                 of the .safetensors bytes (64 hex digits)
    format          "safetensors"
    paper           str                 citation
    preprocessing   {"normalisation": {"method", "percentile", "mask"}, "voxel_size_mm"}
    inference       a :class:`~mrenhance.engine.grid.GridPlan` as a dict (patch_size, overlap,
                    blend, scale, slice_axis, placement, pad_mode): tiling for ``enhance``;
                    ``tiling: exact`` asks for memory-planned exact tiles instead
    training        {...}               recipe, overrides, data, steps, seconds, ...
    metrics         {...}               validation / held-out test numbers, with their protocol
    limitations     [str, ...]          where the model must not be trusted, in words (e.g.
                                        "trained on simulated anatomy only"); may be empty
    provenance      {...}               git commit, versions, machine, date

Reading validates types and values and names the card file in a one-line
:class:`~mrenhance.errors.WeightsError`, so a hand-edited card can never reach the network
builder with, say, a string where a mapping belongs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from mrenhance.engine.grid import DEFAULT_PLAN as _DEFAULT_PLAN
from mrenhance.engine.grid import GridPlan
from mrenhance.errors import InputError, WeightsError

__all__ = [
    "DEFAULT_INFERENCE",
    "DEFAULT_NORMALISATION",
    "ModelCard",
    "Normalisation",
    "card_from_dict",
]

#: Tiling defaults when a card names none: those of :data:`mrenhance.engine.grid.DEFAULT_PLAN`
#: (the one place of the project's tiling defaults), as a card's ``inference`` section.
DEFAULT_INFERENCE: dict[str, Any] = {
    k: _DEFAULT_PLAN.to_dict()[k] for k in ("patch_size", "overlap", "blend")
}

#: The intensity normalisation every 3D image task uses unless its card says otherwise:
#: the 99.5th percentile of the voxels inside an automatic head mask of the *input* image
#: (see :func:`mrenhance.tasks.normalise.head_mask`). A rule of the input alone, so training,
#: evaluation and ``enhance`` compute the same scale from the same array.
DEFAULT_NORMALISATION: dict[str, Any] = {"method": "percentile", "percentile": 99.5, "mask": "head"}

_MASK_RULES = ("head", "nonzero", "all")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_MAX_SIZE = 1_000_000  # any architecture size above this is a typo, not a network


@dataclass(frozen=True)
class Normalisation:
    """How an input's intensities are scaled before the network and restored after it.

    method : "percentile" (divide by a percentile of the masked input) or "none".
    percentile : in (0, 100].
    mask : "head" (automatic head mask of the input: excludes background noise),
        "nonzero" (voxels > 0) or "all".
    """

    method: str = "percentile"
    percentile: float = 99.5
    mask: str = "head"

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Normalisation:
        if not isinstance(d, dict):
            raise WeightsError(f"{where}: preprocessing.normalisation must be an object")
        unknown = sorted(set(d) - {"method", "percentile", "mask"})
        if unknown:
            raise WeightsError(f"{where}: preprocessing.normalisation.{unknown[0]}: unknown key")
        method = d.get("method", "percentile")
        if method not in ("percentile", "none"):
            raise WeightsError(
                f"{where}: preprocessing.normalisation.method {method!r}: use percentile or none"
            )
        pct = d.get("percentile", 99.5)
        if (
            isinstance(pct, bool)
            or not isinstance(pct, (int, float))
            or not math.isfinite(pct)
            or not 0 < pct <= 100
        ):
            raise WeightsError(
                f"{where}: preprocessing.normalisation.percentile must be in (0, 100]"
            )
        mask = d.get("mask", "head")
        if mask not in _MASK_RULES:
            raise WeightsError(
                f"{where}: preprocessing.normalisation.mask {mask!r}: use one of {_MASK_RULES}"
            )
        return cls(str(method), float(pct), str(mask))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ModelCard:
    """The model card of one weights file (see the module docstring for the schema)."""

    name: str
    task: str
    architecture: dict[str, Any]
    sha256: str = ""
    parameters: int = 0
    format: str = "safetensors"
    paper: str = ""
    preprocessing: dict[str, Any] = field(
        default_factory=lambda: {"normalisation": dict(DEFAULT_NORMALISATION)}
    )
    inference: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_INFERENCE))
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    limitations: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ views
    @property
    def normalisation(self) -> Normalisation:
        return Normalisation.from_dict(
            self.preprocessing.get("normalisation", DEFAULT_NORMALISATION), self.name
        )

    @property
    def voxel_size_mm(self) -> tuple[float, ...] | None:
        v = self.preprocessing.get("voxel_size_mm")
        return tuple(float(x) for x in v) if v else None

    @property
    def voxel_size_range_mm(self) -> tuple[float, float] | None:
        """(smallest, largest) voxel size in mm the model was trained on, when it saw a range
        (synthetic scans at random resolutions); None: only ``voxel_size_mm``."""
        v = self.preprocessing.get("voxel_size_range_mm")
        return (float(v[0]), float(v[1])) if v else None

    def inference_defaults(self) -> dict[str, Any]:
        """Tiling defaults: the card's ``inference`` over :data:`DEFAULT_INFERENCE`."""
        return {**DEFAULT_INFERENCE, **self.inference}

    def plan(self, **overrides: Any) -> GridPlan:
        """The card's fixed tiling as a GridPlan; ``overrides`` (not None) replace its keys."""
        given = {k: v for k, v in overrides.items() if v is not None}
        merged = {**self.inference_defaults(), **given}
        merged.pop("tiling", None)
        return GridPlan.from_dict(merged)

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style read of a top-level key (``extra`` included), for older callers."""
        if key in self.extra:
            return self.extra[key]
        return getattr(self, key, default) if key in _FIELDS else default

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in _FIELDS if k != "extra"}
        d.update(self.extra)
        return d

    def to_json(self) -> str:
        try:
            return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        except (TypeError, ValueError) as err:
            raise WeightsError(f"{self.name}: model card is not JSON-serialisable ({err})") from err

    @classmethod
    def from_dict(cls, d: Any, where: str = "model card") -> ModelCard:
        return card_from_dict(d, where)


_MISSING = object()
_FIELDS = tuple(f.name for f in dataclasses.fields(ModelCard))


def _require_mapping(d: dict, key: str, where: str) -> dict[str, Any]:
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WeightsError(f"{where}: {key} must be an object, got {type(value).__name__}")
    return value


def _check_architecture(arch: Any, where: str) -> dict[str, Any]:
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not arch["name"]:
        raise WeightsError(f"{where}: architecture must be an object with a name")
    config = arch.get("config") or {}
    if not isinstance(config, dict):
        raise WeightsError(f"{where}: architecture.config must be an object")
    for key, value in config.items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, (int, float)):
            if not math.isfinite(value) or value < 0 or value > _MAX_SIZE:
                raise WeightsError(
                    f"{where}: architecture.config.{key} = {value!r} is not a usable size"
                )
        elif isinstance(value, (list, tuple)):
            if any(
                not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= _MAX_SIZE
                for v in value
            ):
                raise WeightsError(f"{where}: architecture.config.{key} holds an unusable value")
        elif not isinstance(value, dict):
            raise WeightsError(f"{where}: architecture.config.{key} has an unsupported type")
    return {"name": arch["name"], "config": dict(config)}


def _check_limitations(value: Any, where: str) -> list[str]:
    """Free-text limitations: a list of non-empty strings (an absent key: none)."""
    if value is None:
        return []
    if not isinstance(value, list) or any(not isinstance(v, str) or not v.strip() for v in value):
        raise WeightsError(f"{where}: limitations must be a list of non-empty strings")
    return [v.strip() for v in value]


def _check_inference(inference: dict[str, Any], where: str) -> dict[str, Any]:
    """The card's tiling section must build a :class:`GridPlan` (same keys and checks)."""
    for key in ("patch_size", "overlap"):
        value = inference.get(key)
        values = value if isinstance(value, list) else [value]
        if value is not None and any(
            isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 512 for v in values
        ):
            raise WeightsError(f"{where}: inference.{key} must be integers in 0..512")
    tiling = inference.get("tiling", "fixed")
    if tiling not in ("fixed", "exact"):
        raise WeightsError(f"{where}: inference.tiling {tiling!r}: use fixed or exact")
    try:
        GridPlan.from_dict({k: v for k, v in inference.items() if k != "tiling"})
    except (InputError, TypeError, ValueError) as err:
        detail = str(err).replace("GridPlan.from_dict: ", "").replace("GridPlan: ", "")
        raise WeightsError(f"{where}: inference: {detail}") from err
    return dict(inference)


def card_from_dict(d: Any, where: str = "model card") -> ModelCard:
    """Validate a card dict (as read from JSON) into a :class:`ModelCard`.

    ``where`` names the card in errors (usually its path). Cards written before the
    ``preprocessing``/``provenance`` keys existed are read too: a missing preprocessing
    means :data:`DEFAULT_NORMALISATION`, and an old ``shipped`` section is the provenance.
    """
    from mrenhance.tasks import known_task_names

    if not isinstance(d, dict):
        raise WeightsError(f"{where}: model card must be a JSON object")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise WeightsError(f"{where}: model card has no name")
    task = d.get("task")
    if not isinstance(task, str) or task not in known_task_names():
        known = ", ".join(known_task_names())
        raise WeightsError(f"{where}: unknown task {task!r} (known: {known})")
    arch = _check_architecture(d.get("architecture"), where)
    sha = d.get("sha256", "")
    if not isinstance(sha, str) or (sha and not _SHA.match(sha.lower())):
        raise WeightsError(f"{where}: sha256 must be 64 hexadecimal digits")
    params = d.get("parameters", 0)
    if isinstance(params, bool) or not isinstance(params, int) or params < 0:
        raise WeightsError(f"{where}: parameters must be a non-negative integer")
    preprocessing = _require_mapping(d, "preprocessing", where) or {
        "normalisation": dict(DEFAULT_NORMALISATION)
    }
    Normalisation.from_dict(preprocessing.get("normalisation", DEFAULT_NORMALISATION), where)
    voxel = preprocessing.get("voxel_size_mm")
    if voxel is not None and (
        not isinstance(voxel, list)
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in voxel)
    ):
        raise WeightsError(f"{where}: preprocessing.voxel_size_mm must be positive numbers")
    span = preprocessing.get("voxel_size_range_mm")
    if span is not None and (
        not isinstance(span, list)
        or len(span) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in span)
        or span[0] > span[1]
    ):
        raise WeightsError(
            f"{where}: preprocessing.voxel_size_range_mm must be [smallest, largest] in mm"
        )
    inference = _check_inference(_require_mapping(d, "inference", where), where)
    provenance = _require_mapping(d, "provenance", where) or _require_mapping(d, "shipped", where)
    extra = {k: v for k, v in d.items() if k not in _FIELDS and k != "shipped"}
    return ModelCard(
        name=name,
        task=task,
        architecture=arch,
        sha256=sha.lower(),
        parameters=params,
        format=str(d.get("format", "safetensors")),
        paper=str(d.get("paper", "")),
        preprocessing=preprocessing,
        inference=inference,
        training=_require_mapping(d, "training", where),
        metrics=_require_mapping(d, "metrics", where),
        limitations=_check_limitations(d.get("limitations"), where),
        provenance=provenance,
        extra=extra,
    )
