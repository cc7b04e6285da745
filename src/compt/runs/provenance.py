"""Which code, libraries and hardware made a run: the ``provenance`` entry of ``results.json``.

::

    "provenance": {
      "compt": "0.1.0", "git": {"commit": "422cd18...", "dirty": false},   # git: null outside a checkout
      "python": "3.11.9", "torch": "2.13.0", "cuda": "12.8" | null, "transformers": "5.24.0",
      "lightning": "2.6.6", "datasets": "5.2.0",
      "device": {"type": "cuda", "name": "NVIDIA H200", "count": 1}, "precision": "bf16-mixed"
    }

``dirty`` is true when tracked files differ from the commit (untracked files are not looked at).
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

#: distribution name of each library recorded (key in the record -> package)
LIBRARIES = {
    "torch": "torch",
    "transformers": "transformers",
    "lightning": "pytorch-lightning",
    "datasets": "datasets",
}


def provenance(device: Any, device_count: int, precision: str) -> dict[str, Any]:
    """The provenance record of a run on ``device_count`` devices like ``device`` (a ``torch.device``: the
    Trainer's root device) at ``precision`` (the Trainer's, e.g. ``32-true``)."""
    import torch

    import compt

    record: dict[str, Any] = {
        "compt": compt.__version__,
        "git": git_state(Path(compt.__file__).resolve().parent),
        "python": platform.python_version(),
    }
    record.update({key: package_version(name) for key, name in LIBRARIES.items()})
    record["cuda"] = torch.version.cuda
    device = torch.device(device)
    record["device"] = {"type": device.type, "name": device_name(device), "count": device_count}
    record["precision"] = str(precision)
    return record


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_state(path: Path) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path``; None outside one (an installed
    wheel) or without git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def device_name(device: Any) -> str:
    """A CUDA device's name (``torch.cuda.get_device_name``), else the CPU's model name (Linux), else the
    machine type."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or device.type
