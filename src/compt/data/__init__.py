"""Data for ComPT: sources (hub / local folder), k-shot and evaluation subsets, the temperature-mixed
multi-task stream with DDP sharding, cached tokenisation, and the Lightning ``ComptDataModule``.

``ComptDataModule`` is imported lazily so that ``compt.data`` itself does not import Lightning.
"""

from typing import Any

from compt.data.config import DataConfig
from compt.data.encode import Collator, encode_split
from compt.data.errors import DataError, DataSourceError
from compt.data.sampling import (
    EvalShardSampler,
    MixedTaskSampler,
    ShardedBatchSampler,
    epoch_quotas,
    eval_indices,
    kshot_indices,
    mixed_stream,
    mixing_probabilities,
    select_train,
    stable_seed,
)
from compt.data.sources import bundled_demo_dir, load_split

__all__ = [
    "Collator",
    "ComptDataModule",
    "DataConfig",
    "DataError",
    "DataSourceError",
    "EvalShardSampler",
    "MixedTaskSampler",
    "ShardedBatchSampler",
    "bundled_demo_dir",
    "encode_split",
    "epoch_quotas",
    "eval_indices",
    "kshot_indices",
    "load_split",
    "mixed_stream",
    "mixing_probabilities",
    "select_train",
    "stable_seed",
]


def __getattr__(name: str) -> Any:
    if name == "ComptDataModule":
        from compt.data.datamodule import ComptDataModule

        return ComptDataModule
    raise AttributeError(f"module 'compt.data' has no attribute {name!r}")
