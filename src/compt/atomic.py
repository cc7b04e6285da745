"""Outputs written whole or not at all, and the errors of writing them as one line.

- :func:`atomic_file` / :func:`write_text_atomic`: a file is written to a temporary sibling
  (``.<name>.XXXXXXXX.tmp``), flushed to disk, given the user's umask and renamed over the target, so a
  reader sees the old file or the new one, never a truncated one (a kill or a full disk leaves at most the
  hidden temporary file, which a run's relaunch removes).
- :func:`atomic_folder`: a folder is built beside its target and swapped in (an atomic exchange where Linux
  offers one, else two renames), so a reader never sees old and new files mixed.
- :func:`write_problem` / :class:`~compt.errors.OutputWriteError`: a full disk, a quota, a read-only file
  system or a missing permission while writing becomes one ``compt:`` line naming the path and the way out.

Imports nothing heavy (any layer may use it).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from compt.errors import OutputWriteError
from compt.utils import current_umask, share_like_new_file

#: suffix of every temporary file or folder of an atomic write
TEMP_SUFFIX = ".tmp"

#: errno -> what the environment lacks; only these are a user's to fix (other OSErrors stay bugs)
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file size limit is exceeded (ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_problem(err: BaseException) -> str | None:
    """What the environment lacks when ``err`` stopped a write (a full disk, a read-only file system, no
    permission), or None when ``err`` is something else (a bug keeps its traceback)."""
    if isinstance(err, OutputWriteError):
        return str(err)
    if not isinstance(err, OSError) or err.errno not in ENVIRONMENT_ERRNOS:
        return None
    return ENVIRONMENT_ERRNOS[err.errno]


#: the errnos of a disk without room (the others: a file system or folder that refuses writes)
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def output_error(path: str | Path, err: OSError, elsewhere: str = "") -> OutputWriteError:
    """The one-line error for ``err`` raised while writing ``path``: what failed, why and the way out
    (``elsewhere``: how to point the command at another folder, e.g. ``--out DIR``)."""
    reason = ENVIRONMENT_ERRNOS.get(err.errno or 0, err.strerror or str(err))
    way = "free some space or write elsewhere" if err.errno in NO_ROOM else "write elsewhere"
    return OutputWriteError(
        f"cannot write {path}: {reason} ({err.strerror or err}); {way}"
        + (f" ({elsewhere})" if elsewhere else "")
    )


def environment_error(err: BaseException, elsewhere: str = "") -> OutputWriteError | None:
    """``err`` as one line when the environment caused it (a full disk or quota, a read-only file system, no
    permission) wherever it was raised (a library's own write, e.g. a logger's); None for anything else, which
    keeps its traceback."""
    if isinstance(err, OutputWriteError):
        return err
    if write_problem(err) is None:
        return None
    assert isinstance(err, OSError)
    name = err.filename or "a file"
    if err.errno in (errno.EACCES, errno.EPERM):
        return OutputWriteError(f"cannot access {name}: {ENVIRONMENT_ERRNOS[err.errno]}")
    return output_error(name, err, elsewhere)


def _writing(err: BaseException, folder: Path) -> bool:
    """Whether ``err`` is an environment error of writing into ``folder`` (not, say, of reading an input
    inside the block): no file name (a write on an open handle) or a name in ``folder``."""
    if write_problem(err) is None or isinstance(err, OutputWriteError):
        return False
    name = getattr(err, "filename", None)
    return name is None or Path(name).absolute().parent == folder.absolute()


#: free space below which a folder counts as full before anything is written (a run's first files need more)
MIN_FREE_BYTES = 64 * 1024


def writable_problem(folder: str | Path) -> str | None:
    """Why ``folder`` (existing or not) cannot be written, without creating anything; None when it can.

    The folder itself when it exists, else its nearest existing parent, must be a folder on a writable file
    system with some free space (:data:`MIN_FREE_BYTES`) that this user may write into; a symbolic link to
    nothing on the way is named."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():
            return _in_the_way(probe)
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    disk = os.statvfs(probe)
    if disk.f_flag & os.ST_RDONLY:
        return f"{probe} is on a read-only file system"
    if (
        disk.f_blocks and disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES
    ):  # (some network file systems report 0 blocks)
        return f"the disk holding {probe} is full ({disk.f_bavail * disk.f_frsize // 1024} KiB free)"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"no permission to write in {probe}"
    return None


def require_writable(folder: str | Path, fix: str) -> None:
    """Raise :class:`OutputWriteError` when ``folder`` cannot be written (:func:`writable_problem`), with
    ``fix``, the way out."""
    problem = writable_problem(folder)
    if problem is not None:
        raise OutputWriteError(f"cannot write to {folder}: {problem}; {fix}")


def make_folder(folder: str | Path, elsewhere: str = "") -> Path:
    """``mkdir -p folder``; an environment error (read-only, full, no permission) is an
    :class:`OutputWriteError` naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # a file, or a symbolic link to nothing, in the way
        raise OutputWriteError(f"cannot create the folder {folder}: {_in_the_way(folder)}") from err
    except OSError as err:
        if write_problem(err) is None:
            raise
        raise output_error(folder, err, elsewhere) from err
    return folder


def _in_the_way(path: Path) -> str:
    """What occupies ``path`` (or one of its parents) so that no folder can be made there."""
    for probe in (path, *path.parents):
        if probe.is_symlink() and not probe.exists():
            return (
                f"{probe} is a symbolic link to {os.readlink(probe)}, which does not exist; create its target "
                "or remove the link"
            )
        if probe.exists() and not probe.is_dir():
            return f"{probe} is a file, not a folder"
    return "something else is in the way"


@contextmanager
def atomic_path(path: str | Path, elsewhere: str = "") -> Iterator[Path]:
    """A temporary sibling of ``path`` for a writer that takes a file name (``torch.save``, a YAML or
    safetensors writer); when the block ends without an error, the file is flushed to disk, given the user's
    umask and renamed over ``path``. On any error the temporary file is removed and ``path`` is untouched; an
    environment error while writing (full disk, read-only, no permission) becomes an
    :class:`OutputWriteError` naming ``path`` (``elsewhere``: how to write to another folder, for the
    message)."""
    path = Path(path)
    make_folder(path.parent, elsewhere)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as err:
        if write_problem(err) is None:
            raise
        raise output_error(path, err, elsewhere) from err
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        share_like_new_file(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if _writing(err, path.parent):
            raise output_error(path, err, elsewhere) from err  # type: ignore[arg-type]
        raise


@contextmanager
def atomic_file(
    path: str | Path, mode: str = "w", elsewhere: str = "", **open_args: Any
) -> Iterator[IO[Any]]:
    """:func:`atomic_path`, opened: ``mode`` is ``"w"`` or ``"wb"``; ``open_args`` go to ``open``
    (``newline``, ``encoding``)."""
    with atomic_path(path, elsewhere) as tmp, open(tmp, mode, **open_args) as handle:
        yield handle


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8", elsewhere: str = "") -> Path:
    """Write ``text`` to ``path`` whole or not at all (:func:`atomic_file`)."""
    with atomic_file(path, "w", elsewhere, encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


@contextmanager
def atomic_folder(
    target: str | Path, replaceable: Callable[[Path], bool] = lambda folder: False, elsewhere: str = ""
) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target`` to build the output in; when the block ends without
    an error it takes ``target``'s place, else it is removed and ``target`` is untouched.

    An existing ``target`` is replaced only when it is an empty folder or ``replaceable(target)`` says so
    (e.g. it is an earlier output of the same command); otherwise :class:`OutputWriteError` is raised before
    anything is written. Temporary folders of interrupted builds of the same target are removed first.

    The swap is one atomic exchange where the system offers it (Linux ``renameat2``), else two renames (a
    reader in between sees no folder, never a mixed one)."""
    shown, target = target, Path(os.path.abspath(target))  # `--out .` has a name and a parent too
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutputWriteError(f"cannot write the folder {shown}: {_in_the_way(target)}")
    if target.is_dir() and any(target.iterdir()) and not replaceable(target):
        raise OutputWriteError(
            f"{shown} exists and is not an earlier output of this command; choose a new folder or remove it"
        )
    parent = make_folder(target.parent, elsewhere)
    for stale in parent.glob(f".{glob.escape(target.name)}.*{TEMP_SUFFIX}"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        build = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=parent))
    except OSError as err:
        if write_problem(err) is None:
            raise
        raise output_error(shown, err, elsewhere) from err
    try:
        os.chmod(build, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        yield build
        _swap_in(build, target)
    except BaseException as err:
        shutil.rmtree(build, ignore_errors=True)
        if _writing(err, build) or _writing(err, parent):
            raise output_error(shown, err, elsewhere) from err  # type: ignore[arg-type]
        raise


def _swap_in(build: Path, target: Path) -> None:
    """Put the finished folder ``build`` in ``target``'s place and remove what was there."""
    if not target.exists():
        os.rename(build, target)
        return
    if exchange(build, target):
        shutil.rmtree(build)  # now holds the old output
        return
    old = build.with_name(build.name.removesuffix(TEMP_SUFFIX) + ".old" + TEMP_SUFFIX)  # removed if left
    os.rename(target, old)
    os.rename(build, target)
    shutil.rmtree(old)


#: ``renameat2`` flag: swap two paths atomically (Linux >= 3.15 on most local file systems)
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step; False when the system or file system cannot (then
    nothing changed)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # not Linux, or a C library without renameat2
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))
