"""``DataConfig``: every data option (Hydra group ``data``), validated on construction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from compt.errors import ConfigError
from compt.fields import unknown_keys

SOURCES = ("hub", "local")


def _help(text: str, default: Any) -> Any:
    """A dataclass field with a help string in its metadata."""
    return field(default=default, metadata={"help": text})


@dataclass
class DataConfig:
    """Where the task data comes from, how it is sampled, batched and tokenised."""

    #: "hub" (datasets.load_dataset from the Hugging Face hub) or "local" (files under ``dir``)
    source: str = _help('"hub" (Hugging Face hub) or "local" (files under `dir`)', "hub")
    #: local folder laid out ``<dir>/<task>/<split>.{parquet,jsonl,csv}``; None with source=local = bundled demo
    dir: str | None = _help(
        "local folder <dir>/<task>/<split>.{parquet,jsonl,csv}; None = bundled demo", None
    )
    #: training examples per task drawn from the train split; -1 = the whole split
    k: int = _help("k-shot training examples per task; -1 = the whole train split", 16)
    #: draw k examples per label instead of k per task (regression tasks fall back to k per task)
    kshot_balanced: bool = _help("k examples per label (regression tasks: k per task, with a warning)", False)
    #: k larger than the split: use every row instead of failing
    kshot_allow_fewer: bool = _help("when k exceeds the split size, use all rows instead of failing", False)
    #: run seed: k-shot draws, the training stream and the carved validation set depend on it
    seed: int = _help("run seed for k-shot sampling and the training stream", 42)
    #: evaluation examples per task (a seeded subset); -1 = the whole evaluation split
    eval_max_samples: int = _help("evaluation examples per task; -1 = all", 100)
    #: seed of the evaluation subset; independent of the run seed so every run sees the same examples
    eval_seed: int = _help("seed of the evaluation subset (independent of the run seed)", 0)
    #: rows per task carved from train (disjoint from the k-shot set) for model selection; 0 = off
    validation_from_train: int = _help("rows per task carved from train for model selection; 0 = off", 0)
    #: mixing temperature T: each epoch task i gets a quota proportional to n_i^(1/T), rows without replacement
    temperature: float = _help("task mixing temperature T (quota_i ∝ n_i^(1/T); 1 = proportional)", 1.0)
    #: training batch size (per process)
    batch_size: int = _help("training batch size per process", 20)
    #: evaluation batch size (per process)
    eval_batch_size: int = _help("evaluation batch size per process", 64)
    #: input length limit in tokens (longer inputs are truncated, keeping the final </s>)
    max_source_length: int = _help("input truncation length in tokens", 256)
    #: target length limit in tokens
    max_target_length: int = _help("target truncation length in tokens", 8)
    #: DataLoader worker processes
    num_workers: int = _help("DataLoader worker processes", 0)
    #: batch training examples of similar length together (less padding); batch order stays seeded
    group_by_length: bool = _help("group training examples of similar length into batches", False)
    #: training examples per epoch; None = the sum of the per-task training set sizes
    epoch_size: int | None = _help("training examples per epoch; None = sum of the training set sizes", None)

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

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
