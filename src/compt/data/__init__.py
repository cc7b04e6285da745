"""Data for ComPT: sources (hub / local folder), k-shot and evaluation subsets, the temperature-mixed
multi-task stream with DDP sharding, cached tokenisation, and ``compt data`` (snapshot / check).

Plain PyTorch and ``datasets``: the Lightning ``ComptDataModule`` that serves these to a Trainer is
:mod:`compt.training.datamodule`. The names below are imported on first use (``compt data --help`` stays
fast).
"""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.data.config": ["DataConfig"],
        "compt.data.encode": ["Collator", "encode_split"],
        "compt.errors": ["DataError", "DataSourceError"],
        "compt.data.sampling": [
            "EvalShardSampler",
            "MixedTaskSampler",
            "ShardedBatchSampler",
            "epoch_quotas",
            "eval_indices",
            "mixed_stream",
            "mixing_probabilities",
            "select_train",
            "stable_seed",
        ],
        "compt.data.sources": ["bundled_demo_dir", "load_split"],
    },
)
