"""Turn model outputs into task predictions: greedy generation (the paper) or rank classification."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from compt.errors import ConfigError
from compt.evaluation.config import EVAL_MODES, EvalConfig
from compt.models.seq2seq import ComptModel
from compt.models.tokenization import encode_targets
from compt.prompts.masks import PromptMask
from compt.tasks import TaskSpec


@dataclass
class Predictions:
    """One batch's predictions: ``values (B,)`` float (class id or score; NaN = invalid) and their texts."""

    values: Tensor
    texts: list[str]


class Predictor(nn.Module):
    """Predicts with ``mode="generate"`` (greedy decoding, then parse the text) or ``mode="rank"`` (score each
    candidate target — every label word, or every 0.2-grid value for regression — in one batched decoder pass
    and take the most likely; never invalid).

    The candidates of all tasks are tokenised once, as training targets are (:func:`encode_targets`), into a
    ``(T, C, M)`` buffer (-100 padded). ``model``: a :class:`ComptModel` or its causal counterpart.
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
        self.candidate_texts = [task.candidates() for task in self.tasks]
        self.register_buffer("candidates", self._tokenize_candidates(), persistent=False)

    def _tokenize_candidates(self) -> Tensor:
        encoded = [encode_targets(self.tokenizer, texts) for texts in self.candidate_texts]
        n_cand = max(len(ids) for ids in encoded)
        length = max(len(seq) for ids in encoded for seq in ids)
        out = torch.full((len(encoded), n_cand, length), -100, dtype=torch.long)
        for t, ids in enumerate(encoded):
            for c, seq in enumerate(ids):
                out[t, c, : len(seq)] = torch.tensor(seq)
        return out

    @torch.no_grad()
    def forward(
        self,
        model: ComptModel,
        batch: dict[str, Tensor],
        mask: PromptMask | str | None = None,
        prompt_ids: Tensor | None = None,
    ) -> Predictions:
        """Predict ``batch``'s rows as answers of their own tasks (``batch["task_ids"]``: candidates, parsing).

        ``prompt_ids (B,)``: the task whose prompt each row gets (default: its own task) — another task's
        prompt answering this task's row (the task × prompt matrix of the paper's Fig. A1).
        """
        ids, attention, task_ids = batch["input_ids"], batch["attention_mask"], batch["task_ids"]
        prompts = task_ids if prompt_ids is None else prompt_ids
        if self.mode == "rank":
            scores = model.score_candidates(
                ids, attention, prompts, self.candidates[task_ids], mask
            )  # (B, C)
            best = scores.argmax(-1).tolist()
            texts = [self.candidate_texts[t][c] for t, c in zip(task_ids.tolist(), best)]
        else:
            generated = model.generate(
                ids,
                attention,
                prompts,
                self.max_new_tokens,
                mask,
                repetition_penalty=self.repetition_penalty,
            )
            texts = [t.strip() for t in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]
        values = [self.tasks[t].parse(text) for t, text in zip(task_ids.tolist(), texts)]
        tensor = torch.tensor([float("nan") if v is None else float(v) for v in values], device=ids.device)
        return Predictions(tensor, texts)
