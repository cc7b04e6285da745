"""File systems that refuse writes, for the tests of what compt does on a full disk or a read-only folder.

- :func:`small_disk`: a tmpfs of a few KiB mounted on a folder (needs root and ``mount``; skipped otherwise),
  so writes fail with ENOSPC as on a full disk.
- :func:`read_only_folder`: a read-only tmpfs (root: EROFS, which root cannot write through), or, for another
  user, a folder without write permission (EACCES); skipped where neither can be made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount_tmpfs(folder: Path, options: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root and mount(8)")
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextmanager
def small_disk(folder: Path, kib: int = 64) -> Iterator[Path]:
    """``folder`` on a tmpfs of ``kib`` KiB (ENOSPC once it is full); unmounted afterwards."""
    _mount_tmpfs(folder, f"size={kib}k,mode=0777")
    try:
        yield folder
    finally:
        _unmount(folder)


def fill(folder: Path, leave_kib: int = 0) -> None:
    """Fill the file system of ``folder`` until a write fails (a full disk), then free ``leave_kib`` KiB."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    if leave_kib:
        os.truncate(filler, max(0, filler.stat().st_size - leave_kib * 1024))


@contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """``folder``, which the test process cannot write into: a read-only tmpfs for root, else a folder without
    write permission."""
    if os.geteuid() == 0:
        _mount_tmpfs(folder, "size=64k,ro")
        try:
            yield folder
        finally:
            _unmount(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
