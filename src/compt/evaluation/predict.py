"""Turn model outputs into task predictions: greedy generation (the paper) or rank classification."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from compt.errors import ConfigError
from compt.evaluation.config import EVAL_MODES, EvalConfig
from compt.models.seq2seq import ComptModel
from compt.models.tokenization import encode_targets
from compt.prompts.masks import PromptMask
from compt.tasks import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """One batch's predictions: ``values (B,)`` float (class id, choice index or score; NaN = none), their texts
    and ``valid (B,)`` bool (the answer as predicted is one of the task's: a label, a score, one of the row's
    choices, or any text for a task scored as text without choices). A task with per-row choices always answers
    one of them: a generated text that names none is replaced by the choice rank classification picks (its
    ``valid`` is False and ``generated`` keeps the text; None elsewhere)."""

    values: Tensor
    texts: list[str]
    valid: Tensor
    generated: list[str | None] | None = None


class Predictor(nn.Module):
    """Predicts with ``mode="generate"`` (greedy decoding, then parse the text) or ``mode="rank"`` (score each
    candidate target — every label word, every 0.2-grid value for regression, or the row's own choices — in one
    batched decoder pass and take the most likely; never invalid). Under ``rank`` a task without candidates
    (answers scored as text, e.g. extractive QA) is generated; the log says so once. Under ``generate`` a task
    with per-row choices is read as the choice its text names, else the choice rank classification picks, so
    its answer is always one of the row's choices.

    The fixed candidates of all tasks are tokenised once, as training targets are (:func:`encode_targets`), into
    a ``(T, C, M)`` buffer (-100 padded); per-row choices come with the batch (``choice_labels``, ``choices``).
    A task's own ``max_new_tokens`` wins over the predictor's. ``model``: a :class:`ComptModel` or its causal
    counterpart.
    """

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        tokenizer: PreTrainedTokenizerBase,
        mode: str = EvalConfig.mode,
        max_new_tokens: int = EvalConfig.max_new_tokens,
        repetition_penalty: float = EvalConfig.repetition_penalty,
    ) -> None:
        super().__init__()
        if mode not in EVAL_MODES:
            raise ConfigError(f"eval.mode={mode!r}; choose one of {', '.join(EVAL_MODES)}")
        self.tasks, self.tokenizer, self.mode = list(tasks), tokenizer, mode
        self.max_new_tokens, self.repetition_penalty = max_new_tokens, repetition_penalty
        self.new_tokens = [task.max_new_tokens or max_new_tokens for task in self.tasks]
        self.candidate_texts = [task.candidates() for task in self.tasks]
        self.register_buffer("candidates", self._tokenize_candidates(), persistent=False)
        generated = [task.name for task in self.tasks if not task.has_candidates]
        if mode == "rank" and generated:
            log.info(
                "[compt] eval.mode=rank: no answer candidates for %s (answers scored as text): generated "
                "greedily, as with eval.mode=generate",
                ", ".join(generated),
            )

    def _tokenize_candidates(self) -> Tensor:
        encoded = [encode_targets(self.tokenizer, texts) if texts else [] for texts in self.candidate_texts]
        n_cand = max((len(ids) for ids in encoded), default=0) or 1
        length = max((len(seq) for ids in encoded for seq in ids), default=0) or 1
        out = torch.full((len(encoded), n_cand, length), -100, dtype=torch.long)
        for t, ids in enumerate(encoded):
            for c, seq in enumerate(ids):
                out[t, c, : len(seq)] = torch.tensor(seq)
        return out

    @torch.no_grad()
    def forward(
        self,
        model: ComptModel,
        batch: dict[str, Any],
        mask: PromptMask | str | None = None,
        prompt_ids: Tensor | None = None,
    ) -> Predictions:
        """Predict ``batch``'s rows as answers of their own tasks (``batch["task_ids"]``: candidates, choices,
        parsing).

        ``prompt_ids (B,)``: the task whose prompt each row gets (default: its own task) — another task's
        prompt answering this task's row (the task × prompt matrix of the paper's Fig. A1).
        """
        tasks = batch["task_ids"].tolist()
        batch = {**batch, "prompt_ids": batch["task_ids"] if prompt_ids is None else prompt_ids}
        ranked = [i for i, t in enumerate(tasks) if self.mode == "rank" and self.tasks[t].has_candidates]
        texts = [""] * len(tasks)
        if ranked:
            for row, text in zip(ranked, self._rank(model, batch, ranked, mask)):
                texts[row] = text
        generated = sorted(set(range(len(tasks))) - set(ranked))
        if generated:
            for row, text in zip(generated, self._generate(model, batch, generated, mask)):
                texts[row] = text
        choices = batch.get("choices") or [[] for _ in tasks]
        values = [self.tasks[t].parse(text, choices[i]) for i, (t, text) in enumerate(zip(tasks, texts))]
        free = [self.tasks[t].kind == "text" and not self.tasks[t].choices for t in tasks]
        valid = [v is not None or f for v, f in zip(values, free)]
        # a generated answer that names none of the row's choices: the choice the model ranks highest instead
        missed = [i for i in generated if self.tasks[tasks[i]].choices and values[i] is None]
        generated_texts: list[str | None] = [None] * len(tasks)
        if missed:
            for row, text in zip(missed, self._rank(model, batch, missed, mask)):
                generated_texts[row], texts[row] = texts[row], text
                values[row] = self.tasks[tasks[row]].parse(text, choices[row])
        device = batch["input_ids"].device
        tensor = torch.tensor([float("nan") if v is None else float(v) for v in values], device=device)
        return Predictions(tensor, texts, torch.tensor(valid, device=device), generated_texts)

    def _rank(
        self, model: ComptModel, batch: dict[str, Any], rows: list[int], mask: PromptMask | str | None
    ) -> list[str]:
        """The most likely candidate's text for each of ``rows``: a fixed candidate of its task, or one of the
        row's own choices (``batch["prompt_ids"] (B,)``: the task whose prompt each row gets)."""
        index = torch.tensor(rows, device=batch["input_ids"].device)
        task_ids = batch["task_ids"][index]
        tasks = task_ids.tolist()
        own = [self.tasks[t].choices is not None for t in tasks]
        if any(own):
            per_row = [
                batch["choice_labels"][r] if mine else self.candidates[t]
                for r, t, mine in zip(rows, tasks, own)
            ]
            candidates = stack_padded(per_row)
        else:
            candidates = self.candidates[task_ids]
        scores = model.score_candidates(*prompted_rows(batch, index), candidates, mask)  # (b, C)
        best = scores.argmax(-1).tolist()
        texts = []
        for r, t, c, mine in zip(rows, tasks, best, own):
            options = batch["choices"][r] if mine else self.candidate_texts[t]
            texts.append(options[c] if c < len(options) else "")
        return texts

    def _generate(
        self, model: ComptModel, batch: dict[str, Any], rows: list[int], mask: PromptMask | str | None
    ) -> list[str]:
        """Greedy answers of ``rows``, each with as many new tokens as its task allows: rows of tasks with
        different limits are generated in a pass per limit, so that a row's answer does not depend on the
        tasks it is batched with (``batch["prompt_ids"] (B,)``: the task whose prompt each row gets)."""
        tasks = batch["task_ids"].tolist()
        by_limit: dict[int, list[int]] = {}
        for row in rows:
            by_limit.setdefault(self.new_tokens[tasks[row]], []).append(row)
        texts: dict[int, str] = {}
        for new_tokens, group in by_limit.items():
            index = torch.tensor(group, device=batch["input_ids"].device)
            generated = model.generate(
                *prompted_rows(batch, index), new_tokens, mask, repetition_penalty=self.repetition_penalty
            )
            decoded = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
            texts.update(zip(group, (text.strip() for text in decoded)))
        return [texts[row] for row in rows]


def prompted_rows(batch: dict[str, Any], index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rows ``index`` of a batch as the model takes them: ``input_ids``, ``attention_mask`` and the task whose
    prompt each gets (``prompt_ids``)."""
    return batch["input_ids"][index], batch["attention_mask"][index], batch["prompt_ids"][index]


def stack_padded(candidates: Sequence[Tensor]) -> Tensor:
    """``(C_i, M_i)`` candidate id tensors as one ``(B, C, M)`` tensor, -100 padded."""
    n_cand = max(c.shape[0] for c in candidates)
    length = max(c.shape[1] for c in candidates)
    out = candidates[0].new_full((len(candidates), n_cand, length), -100)
    for row, cand in enumerate(candidates):
        out[row, : cand.shape[0], : cand.shape[1]] = cand
    return out
