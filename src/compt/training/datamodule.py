"""``ComptDataModule``: the data layer (:mod:`compt.data`) as a Lightning ``LightningDataModule``.

Train: one mixed-task stream (``MixedTaskSampler``: per-task quotas, without replacement) sharded over DDP
ranks and cut into batches by ``ShardedBatchSampler`` — create the Trainer with ``use_distributed_sampler=False``. Evaluation: one loader
per task (``dataloader_idx`` = task id), examples sharded over ranks without padding or duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from compt.data.config import DataConfig
from compt.data.encode import Collator, encode_split, tokenizer_fingerprint
from compt.data.sampling import (
    EvalShardSampler,
    MixedTaskSampler,
    ShardedBatchSampler,
    dist_rank_world,
    eval_indices,
    select_train,
)
from compt.data.sources import load_split
from compt.data.validate import check_split, development_copies
from compt.errors import DataError
from compt.tasks import TaskSpec, resolve_tasks

log = logging.getLogger(__name__)

EVAL_FIELDS = ("example_id", "row", "input_text", "target_text", "gold")
"""Keys of ``eval_rows`` entries (plus ``answers`` / ``choices`` for the tasks that have them)."""
ANSWER_FIELDS = ("choices", "choice_ids", "answers", "group")
"""Per-row answer columns an evaluation example carries when its task has them (:func:`answer_columns`)."""


class ComptDataModule(pl.LightningDataModule):
    """Data for one multi-task run.

    Args:
        tasks: task names / set names / ``TaskSpec`` objects, or a mapping name -> overrides (``cfg.tasks``).
            Task id = position in ``task_names``.
        tokenizer: a Hugging Face tokenizer (T5: appends ``</s>``; the prompt goes before it; a causal LM's,
            as ``load_backbone`` marks it: see :mod:`compt.models.tokenization`).
        config: data options.
        raw_splits: optional in-memory data, ``{task: {split: datasets.Dataset}}`` with the hub schema, used
            instead of the configured source for those splits.
        rank, world_size: override the DDP rank/world size (default: from ``torch.distributed``).
    """

    def __init__(
        self,
        tasks: Sequence[str | TaskSpec] | Mapping[str, Any],
        tokenizer: Any,
        config: DataConfig,
        *,
        raw_splits: Mapping[str, Mapping[str, datasets.Dataset]] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        self.tasks: list[TaskSpec] = resolve_tasks(tasks)
        self.task_names: list[str] = [t.name for t in self.tasks]
        self.tokenizer, self.config = tokenizer, config
        self.raw_splits = raw_splits or {}
        self._rank, self._world_size = rank, world_size
        self._train: list[list[dict]] = []
        self._eval: dict[str, list[list[dict]]] = {}
        self._ready = False

    # ------------------------------------------------------------------ loading
    def _raw(self, task: TaskSpec, split: str) -> datasets.Dataset:
        given = self.raw_splits.get(task.name, {}).get(split)
        if given is not None:
            check_split(task, split, given, "in-memory dataset")
            return given
        return load_split(task, split, self.config.source, self.config.dir)

    def _encoded_rows(
        self,
        task: TaskSpec,
        raw: datasets.Dataset,
        indices: Sequence[int],
        task_id: int,
        tok_fp: str,
        *,
        eval_fields: bool,
    ) -> list[dict]:
        """Encode only the selected rows (cached by ``datasets`` under the selection's fingerprint)."""
        c = self.config
        subset = raw.select(indices)
        source_limit = task.max_source_length or c.max_source_length
        target_limit = task.max_target_length or c.max_target_length
        encoded = encode_split(task, subset, self.tokenizer, source_limit, target_limit, tok_fp)
        return _examples(encoded, indices, task_id, with_eval_fields=eval_fields)

    def setup(self, stage: str | None = None) -> None:
        """Load and validate every task's splits, select the k-shot and evaluation rows (from the labels
        alone), and encode just those rows (once)."""
        if self._ready:
            return
        c = self.config
        tok_fp = tokenizer_fingerprint(self.tokenizer)
        self._train, self._eval = [], {"validate": [], "test": []}
        for task_id, task in enumerate(self.tasks):
            train = self._raw(task, task.train_split)
            golds = split_golds(task, train)
            train_idx, val_idx = select_train(
                task,
                golds,
                c.k,
                c.seed,
                balanced=c.kshot_balanced,
                allow_fewer=c.kshot_allow_fewer,
                n_validation=c.validation_from_train,
            )
            self._train.append(self._encoded_rows(task, train, train_idx, task_id, tok_fp, eval_fields=False))
            test = self._raw(task, task.eval_split)
            test_idx = eval_indices(
                task.name, len(test), c.eval_max_samples, c.eval_seed, split_groups(task, test)
            )
            self._eval["test"].append(
                self._encoded_rows(task, test, test_idx, task_id, tok_fp, eval_fields=True)
            )
            self._eval["validate"].append(
                self._encoded_rows(task, train, sorted(val_idx), task_id, tok_fp, eval_fields=True)
                if c.validation_from_train
                else self._eval["test"][-1]
            )
            if c.validation_from_train:
                copies = development_copies(task, self._train[-1], self._eval["validate"][-1])
                if copies:
                    log.warning("[compt] warning: %s", copies)
        self._ready = True

    # ------------------------------------------------------------------ sizes
    def train_sizes(self) -> dict[str, int]:
        """Task name -> number of distinct training examples."""
        self.setup()
        return {n: len(rows) for n, rows in zip(self.task_names, self._train)}

    def epoch_size(self) -> int:
        """Training examples per epoch (config.epoch_size, default the sum of the training set sizes)."""
        return self.config.epoch_size or sum(self.train_sizes().values())

    def steps_per_epoch(self) -> int:
        """Optimizer steps (batches per process) in one epoch, for the learning-rate schedule."""
        return len(self._batch_sampler())

    def _rank_world(self) -> tuple[int, int]:
        return dist_rank_world(self._rank, self._world_size)

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        """Mixed-task batches of this rank's shard of the seeded stream; train batch keys: ``input_ids``
        (B, N), ``attention_mask`` (B, N), ``labels`` (B, M, pad -100), ``task_ids`` (B,)."""
        self.setup()
        flat = [e for rows in self._train for e in rows]
        return DataLoader(
            flat,
            batch_sampler=self._batch_sampler(),
            collate_fn=self._collator(),
            num_workers=self.config.num_workers,
        )

    def _batch_sampler(self) -> ShardedBatchSampler:
        """This rank's batches of the epoch's stream (the epoch from the trainer, when attached)."""
        self.setup()
        rank, world = self._rank_world()
        sampler = MixedTaskSampler(
            self.task_names,
            [len(r) for r in self._train],
            self.config.temperature,
            self.config.seed,
            self.epoch_size(),
        )
        trainer = getattr(self, "trainer", None)
        sampler.set_epoch(trainer.current_epoch if trainer is not None else 0)
        return ShardedBatchSampler(
            sampler,
            self.config.batch_size,
            rank=rank,
            world_size=world,
            lengths=[len(e["input_ids"]) for rows in self._train for e in rows],
            group_by_length=self.config.group_by_length,
        )

    def _eval_loaders(self, stage: str) -> list[DataLoader]:
        self.setup()
        rank, world = self._rank_world()
        return [
            DataLoader(
                rows,
                batch_size=self.config.eval_batch_size,
                sampler=EvalShardSampler(len(rows), rank=rank, world_size=world),
                collate_fn=self._collator(),
                num_workers=self.config.num_workers,
            )
            for rows in self._eval[stage]
        ]

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per task (index = task id): the carved validation rows when
        ``validation_from_train > 0``, else the evaluation sets. Extra keys ``example_ids`` (B,), ``gold`` (B,)."""
        return self._eval_loaders("validate")

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per task (index = task id) over the evaluation subsets (the paper's test sets)."""
        return self._eval_loaders("test")

    def eval_rows(self, task_name: str, stage: str = "test") -> list[dict]:
        """The evaluation examples of a task in loader order (``example_ids`` index this list); keys
        ``example_id``, ``row`` (index in the split), ``input_text``, ``target_text``, ``gold``.
        ``stage="validate"`` gives the validation rows (same as test unless validation_from_train > 0)."""
        self.setup()
        if task_name not in self.task_names:
            raise DataError(f"unknown task {task_name!r}; this run has {self.task_names}")
        if stage not in self._eval:
            raise ValueError(f"stage must be one of {sorted(self._eval)}, got {stage!r}")
        rows = self._eval[stage][self.task_names.index(task_name)]
        return [{k: e[k] for k in (*EVAL_FIELDS, "choices", "answers") if k in e} for e in rows]

    def _collator(self) -> Collator:
        pad = self.tokenizer.pad_token_id
        return Collator(pad if pad is not None else 0)


def _examples(
    encoded: datasets.Dataset, indices: Sequence[int], task_id: int, *, with_eval_fields: bool
) -> list[dict]:
    """Encoded rows (``encoded`` holds exactly the selected rows, in order) as plain dicts, with ``task_id``;
    evaluation rows also get ``example_id`` and ``row`` = the index in the original split."""
    columns = ["input_ids", "labels"] + (["input_text", "target_text", "gold"] if with_eval_fields else [])
    if with_eval_fields:
        columns += [c for c in ANSWER_FIELDS if c in encoded.column_names]
    data = encoded.select_columns(columns).to_dict()
    out = []
    for i, row in enumerate(indices):
        example = {c: data[c][i] for c in columns}
        example["task_id"] = task_id
        if with_eval_fields:
            example["example_id"] = i
            example["row"] = int(row)
        out.append(example)
    return out


def split_golds(task: TaskSpec, dataset: datasets.Dataset) -> list[float]:
    """Each row's gold value for k-shot sampling: class id, score or choice index (NaN for a text task)."""
    if task.kind == "text":
        return [float("nan")] * len(dataset)
    if task.kind == "choice":
        return [float(v) for v in dataset[task.label_column]]
    return [task.gold({task.label_column: value}) for value in dataset[task.label_column]]


def split_groups(task: TaskSpec, dataset: datasets.Dataset) -> list[str] | None:
    """Each row's question group (``task.group_columns``), or None for a task without groups."""
    if not task.group_columns:
        return None
    columns = list(dict.fromkeys(c.split(".")[0] for c in task.group_columns))
    return [task.group_key(row) for row in dataset.select_columns(columns)]  # type: ignore[misc]
