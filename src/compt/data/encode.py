"""Row -> text -> token ids for a whole split, cached once per (split content, task format, tokenizer,
lengths); and the collate function that pads a batch dynamically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from compt.data.sampling import stable_seed
from compt.models.tokenization import encode_inputs, encode_targets, tokenizer_family
from compt.tasks import TaskSpec

if TYPE_CHECKING:  # imported where used: the Collator (compt predict) needs no `datasets`
    import datasets

ENCODING_VERSION = 2
"""Bump when the encoded columns change, so cached encodings are rebuilt."""

_MEMO: dict[str, datasets.Dataset] = {}
"""In-process cache of encoded splits by fingerprint (covers in-memory datasets, which have no cache files)."""


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A stable hash of everything that decides the tokenizer's output (its full serialised state)."""
    from datasets.fingerprint import Hasher

    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    parts = [type(tokenizer).__name__, state, getattr(tokenizer, "truncation_side", "right")]
    family = tokenizer_family(tokenizer)
    return Hasher.hash(parts if family == "seq2seq" else [*parts, family])


def encode_split(
    task: TaskSpec,
    dataset: datasets.Dataset,
    tokenizer: Any,
    max_source_length: int,
    max_target_length: int,
    tokenizer_fp: str | None = None,
) -> datasets.Dataset:
    """Every row of ``dataset`` encoded: columns ``row`` (index in the split), ``input_text``,
    ``target_text``, ``gold`` (float), ``input_ids`` (≤ max_source_length ids; seq2seq: ends with ``</s>``,
    causal: ``[BOS] text``) and ``labels`` (≤ max_target_length ids ending with EOS; causal: the answer as it
    follows the text, see :mod:`compt.models.tokenization`); a task with per-row choices also ``choices`` (texts) and
    ``choice_ids`` (each choice encoded as a target, untruncated); a text task ``answers`` (every gold answer); a
    task with ``group_columns`` ``group`` (a 63-bit id of the row's question). File-backed splits are cached on disk by ``datasets``
    under a fingerprint of (split, task format, tokenizer, lengths), so repeated runs and sweeps never
    re-tokenise."""
    from datasets.fingerprint import Hasher

    fingerprint = Hasher.hash(
        [
            ENCODING_VERSION,
            dataset._fingerprint,
            task.to_dict(),
            tokenizer_fp or tokenizer_fingerprint(tokenizer),
            max_source_length,
            max_target_length,
        ]
    )
    if fingerprint in _MEMO:
        return _MEMO[fingerprint]

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        inputs = [task.format_input(r) for r in rows]
        targets = [task.format_target(r) for r in rows]
        out = {
            "row": indices,
            "input_text": inputs,
            "target_text": targets,
            "gold": [task.gold(r) for r in rows],
            "input_ids": encode_inputs(tokenizer, inputs, max_source_length),
            "labels": encode_targets(tokenizer, targets, max_target_length),
        }
        return out | answer_columns(task, rows, tokenizer)

    encoded = dataset.map(
        encode,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        new_fingerprint=fingerprint,
        desc=f"encode {task.name}",
    )
    _MEMO[fingerprint] = encoded
    return encoded


def answer_columns(task: TaskSpec, rows: Sequence[Mapping[str, Any]], tokenizer: Any) -> dict[str, list]:
    """The per-row answer data of ``rows`` that evaluation needs beside the target: ``choices`` and
    ``choice_ids`` (per-row choices), ``answers`` (text tasks), ``group`` (question groups); none for a task
    with fixed labels."""
    out: dict[str, list] = {}
    if task.choices:
        out["choices"] = [task.row_choices(r) for r in rows]
        out["choice_ids"] = [encode_targets(tokenizer, c) if c else [] for c in out["choices"]]
    if task.kind == "text":
        out["answers"] = [task.gold_answers(r) for r in rows]
    if task.group_columns:
        out["group"] = [stable_seed("group", task.group_key(r)) for r in rows]
    return out


class Collator:
    """Pads a list of examples to the longest in the batch.

    Each example: ``input_ids`` (list[int]), ``labels`` (list[int]), ``task_id`` (int) and, for evaluation,
    ``example_id`` (int) and ``gold`` (float), and where the task has them ``choices`` / ``choice_ids``,
    ``answers`` and ``group`` (:func:`answer_columns`). Output (B = batch, N/M = longest input/target):
    ``input_ids`` (B, N) long padded with ``pad_token_id``, ``attention_mask`` (B, N) long,
    ``labels`` (B, M) long padded with -100, ``task_ids`` (B,) long; plus ``example_ids`` (B,) long and
    ``gold`` (B,) float when present; when any example has them, ``choice_labels`` (B, C, K) long (each row's
    choices as targets, -100 padded: a row with fewer or no choices has all -100 rows), ``choices`` and
    ``answers`` (lists of B lists of texts, empty for rows without) and ``groups`` (B,) long (-1 = none).
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    @staticmethod
    def _pad(seqs: Sequence[Sequence[int]], value: int) -> torch.Tensor:
        width = max(len(s) for s in seqs)
        out = torch.full((len(seqs), width), value, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        return out

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        inputs = [e["input_ids"] for e in examples]
        batch = {
            "input_ids": self._pad(inputs, self.pad_token_id),
            "attention_mask": self._pad([[1] * len(s) for s in inputs], 0),
            "labels": self._pad([e["labels"] for e in examples], -100),
            "task_ids": torch.tensor([e["task_id"] for e in examples], dtype=torch.long),
        }
        if "example_id" in examples[0]:
            batch["example_ids"] = torch.tensor([e["example_id"] for e in examples], dtype=torch.long)
            batch["gold"] = torch.tensor([e["gold"] for e in examples], dtype=torch.float)
        if any("choice_ids" in e for e in examples):
            batch["choice_labels"] = pad_choices([e.get("choice_ids") or [] for e in examples])
            batch["choices"] = [list(e.get("choices") or []) for e in examples]
        if any("answers" in e for e in examples):
            batch["answers"] = [list(e.get("answers") or []) for e in examples]
        if any("group" in e for e in examples):
            batch["groups"] = torch.tensor([e.get("group", -1) for e in examples], dtype=torch.long)
        return batch


def pad_choices(choices: Sequence[Sequence[Sequence[int]]]) -> torch.Tensor:
    """Each row's choice ids as one ``(B, C, K)`` tensor, -100 padded (C: most choices, K: longest choice)."""
    n_choices = max((len(c) for c in choices), default=0) or 1
    width = max((len(ids) for c in choices for ids in c), default=0) or 1
    out = torch.full((len(choices), n_choices, width), -100, dtype=torch.long)
    for row, options in enumerate(choices):
        for index, ids in enumerate(options):
            out[row, index, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return out
