"""Shared fixtures: offline, W&B disabled, the committed tiny T5 and tiny causal LM."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get(
    "PYTEST_XDIST_WORKER"
):  # one test process per core (make test: pytest -n 2): one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections import Counter
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
GLUE_REAL = REPO_ROOT.parent / "shared" / "data" / "glue-real"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_real = pytest.mark.skip(reason=f"real GLUE rows not present at {GLUE_REAL}")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "real_data" in item.keywords and not GLUE_REAL.is_dir():
            item.add_marker(skip_real)
    # Files with the most end-to-end runs first (order within a file kept), so that the test processes of
    # `make test` (pytest-xdist, a file per process) do not end with one long file running alone.
    slow_runs = Counter(item.path for item in items if "slow" in item.keywords)
    items.sort(key=lambda item: -slow_runs[item.path])


@pytest.fixture(scope="session", autouse=True)
def compt_config_registered() -> None:
    """compt's schema and resolvers in Hydra, as ``train.py`` and ``compt sweep`` register them before composing
    (a test that composes ``conf/train.yaml`` needs them; nothing registers them on import)."""
    from compt.config.hydra import register_config

    register_config()


@pytest.fixture(scope="session")
def tiny_backbone():
    """The committed tiny T5 and its tokenizer, loaded through ``from_pretrained`` (frozen)."""
    from compt.models.backbone import load_backbone

    return load_backbone("tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_backbone):
    return tiny_backbone[1]


@pytest.fixture(scope="session")
def tiny_causal_backbone():
    """The committed tiny causal LM (Llama architecture) and its tokenizer, through ``from_pretrained``."""
    from compt.models.backbone import load_backbone

    return load_backbone("tiny-causal")
