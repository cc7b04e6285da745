"""Where the Hydra configs (``conf/``) are, for the ``compt`` commands that read them."""

from __future__ import annotations

from pathlib import Path


def default_config_dir() -> Path:
    """``./conf`` when run from a checkout's root (or any folder with a ``conf/train.yaml``), else the ``conf``
    folder of this source tree."""
    here = Path.cwd() / "conf"
    return here if (here / "train.yaml").is_file() else Path(__file__).resolve().parents[2] / "conf"
