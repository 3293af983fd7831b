"""Path safety for every writer: an output never lands on (or in) one of its inputs.

Every command that writes (``enhance -o`` and ``--summary``, ``simulate -o``, ``evaluate
-o``, ``demo --output``, ``train --run-dir``) checks its planned outputs here *before any
work*, with or without ``--overwrite``. The rules (also in ``docs/reliability.md``):

1. An output file is not one of the inputs, however it is spelled: the same path, a
   symlink to it, a path through ``..`` or symlinked folders, a hard link (same
   ``st_dev``/``st_ino``), or another case where the file system folds case. When the
   output exists, :func:`os.path.samefile` decides; otherwise the comparison is on the
   resolved parent folder plus the name (case-folded where the folder's file system folds
   case).
2. An output file is not written inside a folder given as an input (a DICOM series folder,
   a folder of NIfTIs): the series would change, and a rerun would read our outputs.
3. An output *folder* that a run owns (``train --run-dir``) is not an input, does not hold
   an input and does not lie inside an input folder.
4. In a batch, two inputs that would be written to the same output (``a/t1.nii.gz`` and
   ``b/t1.nii.gz`` -> ``out/t1_enhanced.nii.gz``; ``t1.nii`` and ``t1.nii.gz``; ``T1`` and
   ``t1`` where case folds) are refused, naming both, before any file is read.

Each refusal is an :class:`~mrenhance.errors.InputError` whose one-line message names the
output and the input it would destroy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from mrenhance.errors import InputError

__all__ = [
    "check_batch_outputs",
    "enhanced_name",
    "find_images",
    "holds_dicom_files",
    "is_batch",
    "is_image_tree",
    "plan_enhance_outputs",
    "check_not_input",
    "check_run_folder",
    "folds_case",
    "is_inside",
    "path_key",
    "same_path",
]

PathLike = str | os.PathLike


def _existing_ancestor(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not os.path.exists(p) and p != p.parent:
        p = p.parent
    return p


def folds_case(folder: PathLike) -> bool:
    """Whether the file system holding ``folder`` (or its nearest existing ancestor) treats
    names that differ only in case as the same file.

    Decided by stat-ing a component with cased letters under its swapped-case spelling;
    where no such component exists, the platform's default (case-insensitive on macOS and
    Windows).
    """
    p = _existing_ancestor(Path(folder))
    for q in (p, *p.parents):
        name = q.name
        if not name or name.swapcase() == name:
            continue
        try:
            return os.path.samefile(q, q.with_name(name.swapcase()))
        except OSError:
            return False
    return sys.platform in ("darwin", "win32")


def path_key(path: PathLike) -> str:
    """A string that two spellings of one (possibly not yet existing) file share.

    The parent folder is resolved (symlinks, ``..``), the name kept, and the whole
    case-folded where the parent's file system folds case.
    """
    p = Path(path).expanduser()
    parent = Path(os.path.abspath(p.parent)).resolve(strict=False)
    key = str(parent / p.name)
    return os.path.normcase(key).casefold() if folds_case(parent) else os.path.normcase(key)


def same_path(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder (see the module rules)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    try:
        if os.path.lexists(a) and os.path.exists(b):
            if os.path.exists(a):
                return os.path.samefile(a, b)
            # a dangling symlink: writing through it creates its target
            a = Path(os.path.realpath(a))
    except OSError:
        pass
    # a final component that is a symlink counts as where it points
    ka = path_key(os.path.realpath(a)) if os.path.islink(a) else path_key(a)
    kb = path_key(os.path.realpath(b)) if os.path.islink(b) else path_key(b)
    return ka == kb


def is_inside(path: PathLike, folder: PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies (after resolution) somewhere below it."""
    p = Path(path).expanduser()
    folder = Path(folder).expanduser()
    here = Path(os.path.abspath(p))
    for q in (here, *here.parents):
        if os.path.exists(q) and os.path.exists(folder):
            try:
                if os.path.samefile(q, folder):
                    return True
            except OSError:
                pass
        elif path_key(q) == path_key(folder):
            return True
    return False


def check_not_input(output: PathLike, inputs: Iterable[PathLike], what: str = "output") -> None:
    """Refuse an output that is one of ``inputs`` or lies inside an input folder.

    Raises
    ------
    InputError
        ``<output>: <what> is the input <input> ...`` or ``... is inside the input folder``.
    """
    out = Path(output)
    for inp in inputs:
        inp = Path(inp)
        if same_path(out, inp):
            raise InputError(
                f"{out}: {what} is the input {inp} (choose another name; an input is never "
                "overwritten, even with --overwrite)"
            )
        if os.path.isdir(inp) and is_inside(out, inp):
            raise InputError(
                f"{out}: {what} is inside the input folder {inp} (write it somewhere else)"
            )


def check_batch_outputs(pairs: Sequence[tuple[PathLike, PathLike]]) -> None:
    """Refuse a batch whose inputs are outputs, or where two inputs share an output.

    ``pairs``: (input, output) per batch entry, checked before any file is read.
    """
    inputs = [Path(src) for src, _ in pairs]
    seen: dict[str, Path] = {}
    for src, dst in pairs:
        check_not_input(dst, inputs)
        key = path_key(dst)
        if key in seen:
            raise InputError(
                f"{dst}: inputs {seen[key]} and {src} would both be written to this file "
                "(rename one, or enhance them into separate folders)"
            )
        seen[key] = Path(src)


def check_run_folder(
    folder: PathLike, inputs: Iterable[PathLike], what: str = "run folder"
) -> None:
    """Refuse an output folder that is an input, holds an input or lies in an input folder
    (or whose name the file system cannot hold)."""
    from mrenhance.io.atomic import check_file_name

    out = check_file_name(folder)
    for inp in inputs:
        inp = Path(inp)
        if same_path(out, inp) or is_inside(inp, out):
            raise InputError(f"{out}: {what} holds the input {inp} (choose a folder of its own)")
        if os.path.isdir(inp) and is_inside(out, inp):
            raise InputError(f"{out}: {what} is inside the input folder {inp}")


# ---------------------------------------------------------------------------- enhance batches
def enhanced_name(src: PathLike, fmt: str = "nifti") -> str:
    """``<stem>_enhanced.nii.gz`` for an input file or DICOM series folder; with
    ``fmt="dicom"`` the series folder ``<stem>_enhanced``."""
    name = Path(src).name
    stem = f"{name.removesuffix('.gz').removesuffix('.nii')}_enhanced"
    return stem if fmt == "dicom" else f"{stem}.nii.gz"


_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def _is_dicom_file(path: Path) -> bool:
    """A DICOM suffix, or the ``DICM`` magic at byte 128 (read without following FIFOs)."""
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    try:
        if not path.is_file() or path.stat().st_size < 132:
            return False
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(q for q in folder.iterdir() if not q.name.startswith("."))
    except OSError:  # unlistable: loading it says why, in its own entry
        return []


def holds_dicom_files(folder: PathLike) -> bool:
    """Whether ``folder`` itself holds DICOM files (then it is one series, not a tree)."""
    return any(q.is_file() and _is_dicom_file(q) for q in _listing(Path(folder)))


def find_images(folder: PathLike, fmt: str = "nifti") -> list[tuple[Path, Path]]:
    """Every NIfTI file and DICOM series folder below ``folder``, with its output's path
    relative to the output folder: ``(input, relative output)``, in sorted order.

    The tree is searched recursively (as FSL and BIDS trees are laid out: one subfolder
    per subject, session, ...): ``sub-01/anat/t1.nii.gz`` -> ``sub-01/anat/
    t1_enhanced.nii.gz``; a folder holding DICOM files is one series and is not descended
    into: ``p1/series3/`` -> ``p1/series3_enhanced.nii.gz``. Hidden entries (``.name``)
    are skipped; symlinked folders are not followed (no loops).
    """
    root = Path(folder)
    found: list[tuple[Path, Path]] = []

    def walk(here: Path, rel: Path) -> None:
        entries = _listing(here)
        if here != root and any(q.is_file() and _is_dicom_file(q) for q in entries):
            found.append((here, rel.parent / enhanced_name(here, fmt)))
        for q in entries:
            if not q.is_dir() and q.name.endswith(_NIFTI_SUFFIXES):
                # a FIFO or a broken link with a NIfTI name fails its own entry, loudly
                found.append((q, rel / enhanced_name(q, fmt)))
            elif q.is_dir() and not q.is_symlink():
                walk(q, rel / q.name)

    walk(root, Path())
    return found


def is_image_tree(p: PathLike) -> bool:
    """A folder to enhance as a batch: it holds no DICOM files itself (else it is one
    series) and NIfTI files or DICOM series lie somewhere below it."""
    p = Path(p)
    return os.path.isdir(p) and not holds_dicom_files(p) and bool(find_images(p))


def is_nifti_folder(p: PathLike) -> bool:
    """A folder holding NIfTI files (a batch), as opposed to a DICOM series folder."""
    p = Path(p)
    return os.path.isdir(p) and any(q.name.endswith(_NIFTI_SUFFIXES) for q in _listing(p))


def is_batch(inputs: Sequence[PathLike]) -> bool:
    """Whether ``enhance`` treats ``inputs`` as a batch: several, or one image tree."""
    return len(inputs) > 1 or is_image_tree(inputs[0])


def plan_enhance_outputs(
    inputs: Sequence[PathLike], output: PathLike, fmt: str = "nifti"
) -> list[tuple[Path, Path]]:
    """Pair each input of ``mrenhance enhance`` with its output path, then check them all.

    One input (a file or a DICOM series folder) and ``output`` not a folder: written to
    ``output``. Several inputs, or a folder that is searched (:func:`find_images`: NIfTI
    files and DICOM series in nested subfolders), make a batch: ``output`` is a folder (made
    by the caller once every check passed), each input ``x.nii.gz`` is written to
    ``output/x_enhanced.nii.gz`` and a folder's images to the same relative subfolders
    below ``output``. The pairs pass :func:`check_batch_outputs` (no output is an input,
    none inside an input folder, no two inputs share an output) before any image is read.
    With ``fmt="dicom"`` the outputs are series folders (``output`` itself for one input
    when it does not exist yet, else ``output/x_enhanced/``), which must not hold an input.
    """
    pairs: list[tuple[Path, Path]] = []
    out = Path(output)
    if not is_batch(inputs):
        src = Path(inputs[0])
        pairs = [(src, out / enhanced_name(src, fmt) if os.path.isdir(out) else out)]
    else:
        if os.path.exists(out) and not os.path.isdir(out):
            raise InputError(f"{out}: with several inputs or a folder, -o must be a folder")
        if not os.path.isdir(out) and out.name.endswith(_NIFTI_SUFFIXES):
            raise InputError(
                f"{out}: with several inputs or a folder, -o is a folder, not a NIfTI file name"
            )
        for text in inputs:
            p = Path(text)
            if is_image_tree(p):
                pairs += [(src, out / rel) for src, rel in find_images(p, fmt)]
            else:
                pairs.append((p, out / enhanced_name(p, fmt)))
    folders = [Path(t) for t in inputs if os.path.isdir(t)]
    for _, dst in pairs:
        check_not_input(dst, folders)
        if fmt == "dicom":  # a series folder (replaced with --overwrite) holds no input
            check_run_folder(
                dst, [*(src for src, _ in pairs), *folders], what="output series folder"
            )
    check_batch_outputs(pairs)
    return pairs
