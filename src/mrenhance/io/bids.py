"""BIDS datasets in, BIDS derivatives out.

``mrenhance enhance bids_root/ -o derivs/ --model mdcsrn-b4u4 --suffix T1w`` finds the
images of a BIDS dataset (``sub-<label>/[ses-<label>/]<datatype>/<entities>_<suffix>.nii[.gz]``,
filtered by subject, session and suffix) and writes each result as a BIDS derivative::

    derivs/mrenhance/dataset_description.json        DatasetType "derivative", GeneratedBy
    derivs/mrenhance/sub-01/anat/sub-01_desc-mdcsrnb4u4_T1w.nii.gz
    derivs/mrenhance/sub-01/anat/sub-01_desc-mdcsrnb4u4_T1w.json   Sources, model, versions

The file names keep the input's entities and add ``desc-<model>`` (letters and digits only,
as BIDS labels must be). Parsing follows the BIDS file-name rules; no BIDS library is needed
at run time (the tests check the output with pybids).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrenhance.errors import InputError
from mrenhance.io.atomic import write_text_atomic

__all__ = [
    "BidsImage",
    "derivative_root",
    "find_bids_images",
    "is_bids_root",
    "parse_bids_name",
    "write_dataset_description",
]

PIPELINE = "mrenhance"
BIDS_VERSION = "1.10.0"
_ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9+]+)$")
_NIFTI = (".nii.gz", ".nii")


@dataclass(frozen=True)
class BidsImage:
    """One image of a BIDS dataset.

    Attributes
    ----------
    path: the NIfTI file. relative: its path inside the dataset (POSIX). entities:
    ``{"sub": "01", "ses": "pre", "run": "1", ...}`` in file-name order. suffix: ``T1w``,
    ``dwi``, ... datatype: the folder (``anat``, ``dwi``, ``perf``, ``func``, ...).
    extension: ``.nii.gz`` or ``.nii``.
    """

    path: Path
    relative: str
    entities: dict[str, str] = field(hash=False)
    suffix: str
    datatype: str
    extension: str

    @property
    def uri(self) -> str:
        """The BIDS URI of the image in its dataset: ``bids:raw:sub-01/anat/...``."""
        return f"bids:raw:{self.relative}"

    def derivative_name(self, desc: str) -> str:
        """The file name of a derivative with ``desc-<desc>`` (replacing any desc)."""
        parts = [f"{k}-{v}" for k, v in self.entities.items() if k != "desc"]
        return "_".join([*parts, f"desc-{desc}", self.suffix]) + self.extension

    def derivative_path(self, root: Path, desc: str) -> Path:
        """``root/sub-XX/[ses-YY/]<datatype>/<derivative_name>``."""
        folder = root / f"sub-{self.entities['sub']}"
        if "ses" in self.entities:
            folder = folder / f"ses-{self.entities['ses']}"
        return folder / self.datatype / self.derivative_name(desc)


def is_bids_root(path: str | os.PathLike) -> bool:
    """A folder holding ``dataset_description.json`` and at least one ``sub-*`` folder."""
    p = Path(path)
    return (
        os.path.isdir(p)
        and os.path.isfile(p / "dataset_description.json")
        and any(os.path.isdir(c) and c.name.startswith("sub-") for c in p.iterdir())
    )


def parse_bids_name(name: str) -> tuple[dict[str, str], str, str] | None:
    """``sub-01_ses-a_run-1_T1w.nii.gz`` -> (entities, suffix, extension); None if not BIDS."""
    ext = next((e for e in _NIFTI if name.endswith(e)), None)
    if ext is None:
        return None
    parts = name[: -len(ext)].split("_")
    if len(parts) < 2 or not re.fullmatch(r"[a-zA-Z0-9]+", parts[-1]):
        return None
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        m = _ENTITY.match(part)
        if m is None or m.group(1) in entities:
            return None
        entities[m.group(1)] = m.group(2)
    if "sub" not in entities or next(iter(entities)) != "sub":
        return None
    return entities, parts[-1], ext


def _labels(values: Iterable[str] | None, prefix: str) -> set[str] | None:
    if values is None:
        return None
    out = {str(v).removeprefix(prefix) for v in values}
    return out or None


def find_bids_images(
    root: str | os.PathLike,
    *,
    subjects: Sequence[str] | None = None,
    sessions: Sequence[str] | None = None,
    suffixes: Sequence[str] | None = None,
    datatypes: Sequence[str] | None = None,
) -> list[BidsImage]:
    """The images of a BIDS dataset, sorted by path, filtered by the given labels.

    ``subjects``/``sessions`` take labels with or without their prefix (``01`` or
    ``sub-01``); ``suffixes`` e.g. ``("T1w",)``; ``datatypes`` e.g. ``("anat",)``.
    ``derivatives/``, ``sourcedata/`` and ``code/`` are not searched. A filter that matches
    nothing is an error naming what there is.
    """
    base = Path(root)
    if not is_bids_root(base):
        raise InputError(f"{base}: not a BIDS dataset (no dataset_description.json and sub-*)")
    want_sub, want_ses = _labels(subjects, "sub-"), _labels(sessions, "ses-")
    want_suffix = set(suffixes) if suffixes else None
    want_type = set(datatypes) if datatypes else None
    found: list[BidsImage] = []
    seen_suffixes: set[str] = set()
    for path in sorted(base.glob("sub-*/**/*")):
        if not os.path.isfile(path):
            continue
        parsed = parse_bids_name(path.name)
        if parsed is None:
            continue
        entities, suffix, ext = parsed
        rel = path.relative_to(base)
        datatype = rel.parts[-2]
        if rel.parts[0] != f"sub-{entities['sub']}":
            continue  # a file whose name disagrees with its folder is not part of BIDS
        seen_suffixes.add(suffix)
        if want_sub is not None and entities["sub"] not in want_sub:
            continue
        if want_ses is not None and entities.get("ses") not in want_ses:
            continue
        if want_suffix is not None and suffix not in want_suffix:
            continue
        if want_type is not None and datatype not in want_type:
            continue
        found.append(BidsImage(path, rel.as_posix(), entities, suffix, datatype, ext))
    if not found:
        raise InputError(
            f"{base}: no image matches the filters (subject {sorted(want_sub or []) or 'any'}, "
            f"session {sorted(want_ses or []) or 'any'}, suffix "
            f"{sorted(want_suffix or []) or 'any'}); suffixes present: "
            f"{', '.join(sorted(seen_suffixes)) or 'none'}"
        )
    return found


def bids_label(text: str) -> str:
    """``mdcsrn-b4u4`` -> ``mdcsrnb4u4``: a BIDS label holds letters and digits only."""
    label = re.sub(r"[^a-zA-Z0-9]", "", text)
    if not label:
        raise InputError(f"{text!r}: gives an empty BIDS label")
    return label


def derivative_root(output: str | os.PathLike) -> Path:
    """The pipeline folder of ``-o``: ``derivs/`` -> ``derivs/mrenhance``; a folder already
    named ``mrenhance`` is used as it is."""
    out = Path(output)
    return out if out.name == PIPELINE else out / PIPELINE


def write_dataset_description(
    pipeline_root: str | os.PathLike, *, source: str | os.PathLike | None = None
) -> Path:
    """``dataset_description.json`` of the derivative dataset, with ``GeneratedBy``.

    An existing description is kept, with mrenhance added to its ``GeneratedBy`` if missing.
    """
    from mrenhance import __version__

    path = Path(pipeline_root) / "dataset_description.json"
    generated = {
        "Name": PIPELINE,
        "Version": __version__,
        "Description": "Deep-learning enhancement of MR images",
    }
    doc: dict[str, Any]
    if os.path.isfile(path):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise InputError(f"{path}: not valid JSON ({err})") from None
        by = [g for g in doc.get("GeneratedBy", []) if isinstance(g, dict)]
        if not any(g.get("Name") == PIPELINE for g in by):
            doc["GeneratedBy"] = [*by, generated]
    else:
        doc = {
            "Name": "mrenhance outputs",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [generated],
        }
        if source is not None:
            doc["SourceDatasets"] = [{"URL": Path(source).resolve().as_uri()}]
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(write_text_atomic(path, json.dumps(doc, indent=2) + "\n", overwrite=True))
