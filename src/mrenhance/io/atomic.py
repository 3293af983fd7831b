"""Atomic writes: a temp file in the destination folder, fsync, then ``os.replace``.

A reader (or a crash) sees either the old file or the complete new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mrenhance.errors import InputError, OutputExistsError
from mrenhance.signals import deferred

try:  # POSIX: a writer holds an advisory lock on its temp file until it is done
    import fcntl
except ImportError:  # pragma: no cover - Windows: stale temps are left for the user
    fcntl = None  # type: ignore[assignment]


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output path before any work is done; raise a one-line error if unusable."""
    p = check_file_name(path, temp_suffix=True)
    if p.exists() and p.is_dir():
        raise InputError(f"{p}: output path is a directory")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: output exists (use --overwrite to replace it)")
    if not p.parent.exists():
        raise InputError(f"{p}: output folder {p.parent} does not exist")
    if not p.parent.is_dir():
        raise InputError(f"{p}: output folder {p.parent} is not a folder")
    if not os.access(p.parent, os.W_OK):
        raise InputError(f"{p}: output folder {p.parent} is not writable")
    return p


def check_file_name(path: str | os.PathLike, *, temp_suffix: bool = False) -> Path:
    """``path`` as a Path if the file system can hold its name, else a one-line InputError.

    Refused: a component longer than the folder's ``NAME_MAX`` bytes (255 on most file
    systems; with ``temp_suffix``, the last one also leaves room for our temp name
    ``.<name>.XXXXXXXX.tmp.nii.gz``), a path over ``PATH_MAX``, a NUL byte, and text that
    cannot be encoded as a file name. A name that is not valid UTF-8 is fine (on POSIX it
    arrives as surrogate escapes and is written back byte for byte).
    """
    p = Path(path)
    shown = str(p)
    try:
        raw = os.fsencode(p)
    except UnicodeEncodeError:
        raise InputError(f"{shown}: not a valid file name on this system") from None
    if b"\0" in raw:
        raise InputError(f"{shown}: a file name cannot hold a NUL byte")
    if len(raw) >= _PATH_MAX:
        raise InputError(f"{shown}: path too long for the file system ({len(raw)} bytes)")
    parts = p.parts
    for i, part in enumerate(parts):
        n = len(os.fsencode(part))
        extra = _TEMP_EXTRA if temp_suffix and i == len(parts) - 1 else 0
        limit = _name_max(p.parent if i == len(parts) - 1 else Path(*parts[: i + 1]).parent)
        if n + extra > limit:
            room = f" with room for the temp name ({extra} more)" if extra else ""
            raise InputError(
                f"{shown}: file name too long for the file system ({n} bytes{room}; limit {limit})"
            )
    return p


_PATH_MAX = 4096
_TEMP_EXTRA = len(".") + len(".XXXXXXXX.tmp") + len(".nii.gz")


def _name_max(folder: Path) -> int:
    """NAME_MAX of the file system of ``folder`` (or its nearest existing ancestor)."""
    q = Path(os.path.abspath(folder))
    for cand in (q, *q.parents):
        try:
            return int(os.pathconf(cand, "PC_NAME_MAX"))
        except (OSError, ValueError, AttributeError):
            continue
    return 255


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The temp name keeps the final suffixes (``.nii.gz``) so writers that look at the
    extension behave. On any exception the temp file is removed and ``path`` is untouched.
    The result gets the usual permissions (0o666 minus the umask), not mkstemp's 0o600.
    Without ``overwrite``, a file that appeared at ``path`` while writing is not replaced
    (the final step is a hard link, which fails if the name exists).
    A process killed while writing (SIGKILL, power loss) leaves its temp file
    ``.<name>.XXXXXXXX.tmp<suffix>`` behind; the next successful write of ``path`` deletes
    such files once no live writer holds them (POSIX advisory lock).
    """
    final = check_output_path(path, overwrite)
    suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".gz") else final.suffix
    started = time.time()
    fd, tmp_path = -1, None
    try:
        # SIGINT/SIGTERM (mrenhance.signals) are held while the temp file is created and
        # while it is published or removed, so a signal never leaves it behind; during the
        # write itself they interrupt at once and the finally below removes it
        with deferred():
            try:
                fd, tmp = tempfile.mkstemp(
                    prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent
                )
            except OSError as e:
                raise InputError(
                    f"{final}: cannot create a file in {final.parent} ({e.strerror})"
                ) from e
            tmp_path = Path(tmp)
            if fcntl is not None:
                # held until this write ends (or the process dies, even by SIGKILL): tells
                # _remove_stale_temps of a later write that this temp file is still in use
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover - an open handle would block the rename on Windows
                os.close(fd)
                fd = -1
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        with deferred():
            os.chmod(tmp_path, 0o666 & ~_umask())
            if overwrite:
                os.replace(tmp_path, final)
            else:
                _rename_no_replace(tmp_path, final)
        with contextlib.suppress(OSError):
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        _remove_stale_temps(final, suffix, started)
    finally:
        with deferred():
            if fd >= 0:
                os.close(fd)
            if tmp_path is not None and tmp_path.exists():
                tmp_path.unlink()


def _remove_stale_temps(final: Path, suffix: str, older_than: float) -> None:
    """Delete temp files of ``final`` left by writers that were killed (e.g. SIGKILL).

    A temp file is stale when its name is one of ours for ``final``, it was last modified
    before this write started, and no process holds its lock (a live writer does; the
    kernel drops the lock of a dead one). Without ``fcntl`` nothing is deleted.
    """
    _remove_stale(final, re.escape(f".tmp{suffix}"), older_than, folders=False)


def _remove_stale(final: Path, ending: str, older_than: float, *, folders: bool) -> None:
    """Delete ``.<final name>.<8 chars><ending>`` temp files (or, with ``folders``, temp
    folders) older than ``older_than`` whose lock no live writer holds."""
    import shutil

    if fcntl is None:
        return
    pattern = re.compile(re.escape(f".{final.name}.") + r"[a-z0-9_]{8}" + ending)
    try:
        names = [n for n in os.listdir(final.parent) if pattern.fullmatch(n)]
    except OSError:
        return
    for name in names:
        stale = final.parent / name
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _is_dir_fd(fd) != folders or os.fstat(fd).st_mtime >= older_than:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if folders:
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink()
        except OSError:
            pass  # locked by a live writer, or already gone
        finally:
            os.close(fd)


def _rename_no_replace(tmp_path: Path, final: Path) -> None:
    """Move ``tmp_path`` to ``final`` unless ``final`` exists (atomic where links work)."""
    try:
        os.link(tmp_path, final)
    except FileExistsError as e:
        raise OutputExistsError(f"{final}: output exists (use --overwrite to replace it)") from e
    except OSError:
        # Filesystems without hard links: check, then rename (a small race remains).
        if final.exists():
            raise OutputExistsError(
                f"{final}: output exists (use --overwrite to replace it)"
            ) from None
        os.replace(tmp_path, final)
        return
    tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite)


# ------------------------------------------------------------------------------ folders
def check_output_folder(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output *folder* (a DICOM series) before any work; one-line errors.

    The folder must not exist, or with ``overwrite`` be one that :func:`atomic_folder` may
    replace: a folder of regular ``*.dcm`` files only (a series we or a scanner wrote), never
    a folder holding subfolders or other files. Its parent must be a writable folder.
    """
    p = check_file_name(path, temp_suffix=True)
    if p.exists() or p.is_symlink():
        if not p.is_dir() or p.is_symlink():
            raise InputError(f"{p}: output path exists and is not a folder")
        if not overwrite:
            raise OutputExistsError(f"{p}: output exists (use --overwrite to replace it)")
        others = [q.name for q in p.iterdir() if not (q.is_file() and _is_series_file(q))]
        if others:
            raise InputError(
                f"{p}: not replaced, it holds more than a DICOM series ({others[0]}); "
                "choose another output folder"
            )
    parent = p.parent
    if not parent.exists():
        raise InputError(f"{p}: output folder {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{p}: output folder {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{p}: output folder {parent} is not writable")
    return p


def _is_series_file(p: Path) -> bool:
    return p.suffix.lower() == ".dcm" and not p.is_symlink()


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it is renamed onto ``path``.

    The folder counterpart of :func:`atomic_path` for outputs of several files (a DICOM
    series): the caller writes every file into the temporary folder; each is fsynced and
    the folder renamed at the end, so a reader sees no series or the complete one. On any
    exception the temporary folder is removed and ``path`` is untouched. With
    ``overwrite`` an existing series folder (see :func:`check_output_folder`) is first moved
    aside, then deleted once the new one is in place (a crash between the two renames
    leaves the old series as ``.<name>.XXXXXXXX.old``). A writer killed while writing
    leaves ``.<name>.XXXXXXXX.tmp`` behind; the next successful write of ``path`` removes
    it once no live writer holds its lock.
    """
    import shutil

    final = check_output_folder(path, overwrite)
    started = time.time()
    tmp_path, fd = None, -1
    try:
        with deferred():
            try:
                tmp_path = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp",
                                                 dir=final.parent))  # fmt: skip
            except OSError as e:
                raise InputError(
                    f"{final}: cannot create a folder in {final.parent} ({e.strerror})"
                ) from e
            if fcntl is not None:
                fd = os.open(tmp_path, os.O_RDONLY)
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield tmp_path
        for q in tmp_path.iterdir():
            with open(q, "rb+") as fh:
                os.fsync(fh.fileno())
        with deferred():
            os.chmod(tmp_path, 0o777 & ~_umask())
            old = None
            if final.exists():
                if not overwrite:  # appeared while we were writing
                    raise OutputExistsError(
                        f"{final}: output exists (use --overwrite to replace it)"
                    )
                check_output_folder(final, overwrite)
                old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old",
                                            dir=final.parent))  # fmt: skip
                os.replace(final, old)  # onto the empty placeholder
            os.rename(tmp_path, final)
            tmp_path = None
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(OSError):
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        _remove_stale_folders(final, started)
    finally:
        with deferred():
            if fd >= 0:
                os.close(fd)
            if tmp_path is not None and tmp_path.exists():
                shutil.rmtree(tmp_path, ignore_errors=True)


def _remove_stale_folders(final: Path, older_than: float) -> None:
    """Delete temp folders of ``final`` left by killed writers (see :func:`atomic_folder`)."""
    _remove_stale(final, r"\.tmp", older_than, folders=True)


def _is_dir_fd(fd: int) -> bool:
    import stat

    return stat.S_ISDIR(os.fstat(fd).st_mode)
