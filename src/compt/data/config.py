"""``DataConfig``: the data settings of a run (its config's ``data.*``, ``k``, ``seed``, ``kshot.*`` and ``eval.*``:
:class:`compt.config.run_config.RunConfig`), validated on construction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from compt.errors import ConfigError
from compt.fields import knob, unknown_keys

SOURCES = ("hub", "local")


@dataclass
class DataConfig:
    """Where the task data comes from, how it is sampled, batched and tokenised."""

    source: str = knob("data.source", "hub")
    """hub (``datasets.load_dataset`` from the Hugging Face hub) | local (files under ``dir``)"""
    dir: str | None = knob("data.dir", None)
    """local folder laid out ``<dir>/<task>/<split>.{parquet,jsonl,csv}``; None with source=local = the bundled
    demo data"""
    k: int = knob("k", 16)
    """training examples per task drawn from the train split (k-shot); -1 = the whole split"""
    kshot_balanced: bool = knob("kshot.balanced", False)
    """draw k examples per label instead of k per task (regression tasks fall back to k per task, with a warning)"""
    kshot_allow_fewer: bool = knob("kshot.allow_fewer", False)
    """k larger than the split: use every row instead of failing"""
    seed: int = knob("seed", 1)
    """run seed: the k-shot draws, the training stream and the carved validation set depend on it"""
    eval_max_samples: int = knob("eval.max_samples", 100)
    """evaluation examples per task (a seeded subset, the same for every run seed and method); -1 = all"""
    eval_seed: int = knob("eval.seed", 0)
    """seed of the evaluation subset; independent of the run seed so every run sees the same examples"""
    validation_from_train: int = knob("data.validation_from_train", 0)
    """rows per task carved from train (disjoint from the k-shot set) for model selection; 0 = off (the paper
    tests the last model)"""
    temperature: float = knob("data.temperature", 1.0)
    """task mixing temperature T: each epoch task i gets a quota ∝ n_i^(1/T), rows without replacement"""
    batch_size: int = knob("data.batch_size", 20)
    """training batch size (per process)"""
    eval_batch_size: int = knob("eval.batch_size", 64)
    """evaluation batch size (per process)"""
    max_source_length: int = knob("data.max_source_length", 256)
    """input length limit in tokens (longer inputs are truncated, keeping the final </s>)"""
    max_target_length: int = knob("data.max_target_length", 8)
    """target length limit in tokens"""
    num_workers: int = knob("data.num_workers", 0)
    """DataLoader worker processes"""
    group_by_length: bool = knob("data.group_by_length", False)
    """batch training examples of similar length together (less padding); the batch order stays seeded"""
    epoch_size: int | None = knob("data.epoch_size", None)
    """training examples per epoch; None = the sum of the per-task training set sizes"""

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> None:
            raise ConfigError(f"DataConfig.{name} {rule}, got {getattr(self, name)!r}")

        if self.source not in SOURCES:
            bad("source", f"must be one of {list(SOURCES)}")
        if self.dir is not None and not isinstance(self.dir, str):
            self.dir = str(self.dir)
        ints_min = {
            "k": 1,
            "eval_max_samples": 1,
            "batch_size": 1,
            "eval_batch_size": 1,
            "max_source_length": 2,
            "max_target_length": 1,
            "num_workers": 0,
            "validation_from_train": 0,
            "seed": None,
            "eval_seed": None,
        }
        for name, low in ints_min.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                bad(name, "must be an integer")
            if low is not None and value < low and not (name in ("k", "eval_max_samples") and value == -1):
                bad(name, f"must be >= {low}" + (" or -1 (all)" if name in ("k", "eval_max_samples") else ""))
        for name in ("kshot_balanced", "kshot_allow_fewer", "group_by_length"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be true or false")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float):
            bad("temperature", "must be a number")
        if not self.temperature > 0:
            bad("temperature", "must be > 0")
        if self.epoch_size is not None and (
            isinstance(self.epoch_size, bool) or not isinstance(self.epoch_size, int) or self.epoch_size < 1
        ):
            bad("epoch_size", "must be a positive integer or null")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataConfig:
        """From a mapping (e.g. ``cfg.data``); unknown keys raise ``ValueError`` naming them."""
        unknown, known = unknown_keys(cls, values)
        if unknown:
            raise ConfigError(f"unknown data option(s) {unknown}; known: {known}")
        return cls(**dict(values))
