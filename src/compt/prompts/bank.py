"""The prompt bank: sources, private prompts, their encoders and the router, composed per task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from compt.atomic import atomic_file, write_text_atomic
from compt.errors import InferenceError
from compt.prompts.baselines import AttemptComposer, LowRankTaskMatrices
from compt.prompts.compose import compose
from compt.prompts.config import PromptBankConfig
from compt.prompts.encoder import PromptTable
from compt.prompts.masks import PromptMask, parse_mask
from compt.prompts.methods import METHOD_TRAITS
from compt.prompts.router import Router
from compt.utils import evaluating

WEIGHTS_FILE = "prompt_bank.safetensors"
CONFIG_FILE = "prompt_bank.json"
FORMAT_VERSION = 1
#: the optimizer's parameter groups: a prompt bank's three, and a PEFT adapter's one (compt.adapters)
GROUPS = ("router", "sources", "private", "adapter")
#: PEFT adapter kind (``MethodTraits.adapter``) -> the bank class that trains it, registered by
#: :mod:`compt.adapters.bank` when it is imported (that module builds on this one, so this one names no adapter
#: module: no import circle). :mod:`compt.models.family`, which every model is built with, imports it.
ADAPTER_BANKS: dict[str, Any] = {}


class PromptBank(nn.Module):
    """All trainable prompt parameters of a ComPT run.

    Holds ``private`` (T prompts ``(T, L_u, d)`` + T encoders), ``sources`` (S prompts ``(S, L_s, d)`` +
    S encoders) and ``router`` (logits ``(T, S)``), as the method needs. ``forward`` returns every task's
    target prompt ``(T, L_t, d)`` and its attention mask ``(T, L_t)``; the caller gathers rows by task id.

    Args:
        config: the bank's configuration.
        vocab_embeddings: the backbone's input-embedding table ``(V, d)``, used to initialise private
            prompts (``private_init`` vocab_random / vocab_first_rows). Without it they start uniform.
        generator: random generator for the initialisation (reproducible banks).
    """

    def __init__(
        self,
        config: PromptBankConfig,
        vocab_embeddings: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        c = config

        def table(n: int, length: int) -> PromptTable:
            return PromptTable(
                n, length, c.d_model, c.encoder, c.encoder_hidden, c.encoder_residual, c.encoder_dropout
            )

        traits = c.traits
        if traits.task_matrices:
            self.private = LowRankTaskMatrices(c.n_tasks, c.source_length, c.d_model, c.options.mpt_rank)
        else:
            self.private = table(c.n_tasks, int(c.private_length)) if traits.private else None
        self.sources = table(c.n_sources, c.source_length) if traits.sources else None
        self.router = (
            Router(c.n_tasks, c.n_sources, c.router_learn, c.router_train_norm) if traits.router else None
        )
        self.attention = (
            AttemptComposer(
                c.d_model,
                c.options.attempt_hidden or max(8, c.d_model // 8),
                c.options.attempt_temperature or c.d_model,
            )
            if traits.per_example
            else None
        )
        self._initialise(vocab_embeddings, generator)
        if c.freeze_sources and self.sources is not None:
            self.sources.requires_grad_(False)

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def _initialise(self, vocab: Tensor | None, generator: torch.Generator | None) -> None:
        """Prompt rows (docs/method.md §1) and, with a ``generator``, the prompt encoders too: the same generator
        state gives the same bank whatever torch's global random state."""
        c = self.config
        if generator is not None:
            for table in (self.sources, self.private):
                if isinstance(table, PromptTable) and table.encoder is not None:
                    table.encoder.reset_parameters(generator)
        if self.sources is not None:
            r = c.source_init_range
            self.sources.embedding.uniform_(-r, r, generator=generator)
        if isinstance(self.private, LowRankTaskMatrices):
            self.private.reset_parameters(generator)
            return
        if self.private is None:
            return
        target = self.private.embedding  # (T, L_u, d)
        if c.private_init == "uniform" or vocab is None:
            target.uniform_(-c.source_init_range, c.source_init_range, generator=generator)
            return
        if vocab.shape[-1] != c.d_model:
            raise ValueError(f"vocab embeddings have d={vocab.shape[-1]}, the bank d_model={c.d_model}")
        if c.private_init == "vocab_first_rows":  # the authors' indexing slip: rows 0..L-1 for every task
            rows = torch.arange(target.shape[1]).expand(target.shape[0], -1)
        else:
            rows = torch.randint(0, vocab.shape[0], target.shape[:2], generator=generator)
        target.copy_(vocab.detach().to(target.dtype).cpu()[rows].to(target.device))

    # ------------------------------------------------------------------ composition
    @property
    def method(self) -> str:
        return self.config.method

    @property
    def task_names(self) -> list[str]:
        return self.config.task_names

    @property
    def prompt_length(self) -> int:
        """L_t, rows of each target prompt."""
        return self.config.prompt_length

    def resolve_mask(self, mask: PromptMask | str | None) -> PromptMask | None:
        """Accept a mask name or object; ``None``/``total`` mean no masking."""
        if isinstance(mask, str):
            mask = parse_mask(mask, self.method, self.config.n_sources)
        if mask is None or (mask.keep_private == self.config.uses_private and all(mask.keep_sources)):
            return None
        return mask

    def router_weights(
        self, mask: PromptMask | str | None = None, task_ids: Tensor | None = None
    ) -> Tensor | None:
        """Router weights in the module's current mode (sampled in training), or None without a router.

        Returns ``(T, S)``, one row per task, or with ``task_ids`` ``(B,)`` one row per example ``(B, S)`` — each
        its own Relaxed-Bernoulli sample in training. Under a mask, ssum/msum renormalise over the kept sources;
        mcat zeroes the dropped ones.
        """
        if self.router is None:
            return None
        mask = self.resolve_mask(mask)
        if mask is None:
            return self.router(task_ids=task_ids)
        keep = torch.tensor(mask.keep_sources, device=self.router._constant.device)
        if self.config.traits.concatenates:  # segments keep their trained scale; dropped ones are zeroed
            return self.router(task_ids=task_ids) * keep
        return self.router(keep, task_ids)  # ssum/msum: renormalised over the kept sources

    def kv_prefix(self, batch_size: int) -> object | None:
        """The key/value prefix every attention layer of the backbone starts from: none for prompts, which go
        into the input (a prefix-tuning adapter's: :class:`compt.adapters.bank.AdapterBank`)."""
        return None

    @property
    def samples_per_example(self) -> bool:
        """Whether the target prompts differ between examples of one task right now: in training, with the
        router drawing one sample per example (``router_sample="per_example"``)."""
        return self.router is not None and self.router.samples and self.config.router_sample == "per_example"

    def forward(
        self, mask: PromptMask | str | None = None, task_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Target prompts: one per task, or one per example of ``task_ids`` ``(B,)``.

        Returns:
            prompts ``(T, L_t, d)`` (``(B, L_t, d)`` with ``task_ids``) and an attention mask of the same rows
            ``(T | B, L_t)`` (bool) when a mask removes prompt rows (mcat with dropped sources), else ``None``.
        """
        if self.attention is not None:
            raise ValueError(
                f"method {self.method!r} composes a prompt per example: use example_prompts(...)"
            )
        mask = self.resolve_mask(mask)
        private = self.private() if self.private is not None else None
        if private is not None and task_ids is not None:
            private = private[task_ids]  # (B, L_u, d)
        sources = self.sources() if self.sources is not None else None
        weights = self.router_weights(mask, task_ids)
        if mask is None:
            return compose(self.method, private, sources, weights), None
        return self._compose_masked(mask, private, sources, weights)

    def example_prompts(
        self,
        task_ids: Tensor,
        inputs_embeds: Tensor,
        attention_mask: Tensor,
        mask: PromptMask | str | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Each example's prompt ``(B, L_t, d)`` and attention mask ``(B, L_t)`` (or None).

        Composed per example only when the examples of a task differ (a per-example router sample in training,
        or ``attempt``'s input attention, from the token embeddings ``(B, N, d)`` and ``attention_mask``
        ``(B, N)``); otherwise the T target prompts are composed once and gathered by ``task_ids``.
        """
        if self.attention is not None:
            mask = self.resolve_mask(mask)
            prompts = self.attention.example_prompts(
                self.private()[task_ids], self.sources(), inputs_embeds, attention_mask, mask
            )
            return prompts, None
        if self.samples_per_example:
            return self(mask, task_ids)
        prompts, prompt_mask = self(mask)
        return prompts[task_ids], None if prompt_mask is None else prompt_mask[task_ids]

    def _compose_masked(
        self, mask: PromptMask, private: Tensor | None, sources: Tensor | None, weights: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Composition with parts removed: a removed operand becomes the identity of its operation."""
        traits, c = self.config.traits, self.config
        if not any(mask.keep_sources) and traits.operation == "multiply":
            return private, None  # private prompt alone
        if not mask.keep_private and private is not None:
            private = torch.full_like(private, traits.masked_private)
        prompts = compose(self.method, private, sources, weights)
        if not traits.concatenates:
            return prompts, None
        keep = torch.tensor(mask.keep_sources, device=prompts.device)
        rows = keep.repeat_interleave(c.source_length)  # (S·L_s,)
        return prompts, rows.expand(len(prompts), -1)

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The three named optimizer groups (router / sources / private), each with its encoders.

        ``router`` holds ATTEMPT's attention for ``attempt``; ``private`` MPT's task matrices for ``mpt``.
        Groups with no trainable parameters (router for ``pt``, frozen sources) are empty lists.
        """

        def params(*modules: nn.Module | None) -> list[nn.Parameter]:
            return [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]

        return {
            "router": params(self.router, self.attention),
            "sources": params(self.sources),
            "private": params(self.private),
        }

    # ------------------------------------------------------------------ initialisation from earlier runs
    @torch.no_grad()
    def init_sources_from(self, other: PromptBank) -> None:
        """Copy ``other``'s source prompts and encoders into this bank (``sources.init_from``).

        Both banks need the same number, length and width of sources and the same encoder kind.
        """
        if self.sources is None or other.sources is None:
            raise InferenceError(
                f"sources.init_from: method {self.method!r} and the loaded bank's {other.method!r} must both "
                "have source prompts"
            )
        mine, theirs = self.sources.state_dict(), other.sources.state_dict()
        if {k: v.shape for k, v in mine.items()} != {k: v.shape for k, v in theirs.items()}:
            raise InferenceError(
                "sources.init_from: the loaded sources do not fit this bank: "
                f"{ {k: tuple(v.shape) for k, v in theirs.items()} } vs { {k: tuple(v.shape) for k, v in mine.items()} }"
                " (n_sources, source_length, d_model and prompt.encoder must match)"
            )
        self.sources.load_state_dict(theirs)

    @torch.no_grad()
    def init_private_from_source(self, other: PromptBank, index: int = 0) -> None:
        """Start every task's private prompt (and encoder) as ``other``'s source prompt ``index`` (SPoT)."""
        if not isinstance(self.private, PromptTable) or other.sources is None:
            raise InferenceError(
                "init_private_from_source needs private prompt tables here and sources there"
            )
        source = {k: v[index] for k, v in other.sources.state_dict().items()}
        mine = self.private.state_dict()
        if {k: v.shape[1:] for k, v in mine.items()} != {k: v.shape for k, v in source.items()}:
            raise InferenceError(
                "the source prompt does not fit the private prompts (length, width and encoder must match)"
            )
        self.private.load_state_dict({k: source[k].expand_as(v).clone() for k, v in mine.items()})

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, fold_encoders: bool = False) -> Path:
        """Write ``prompt_bank.safetensors`` + ``prompt_bank.json`` into ``directory``.

        Args:
            fold_encoders: save :meth:`folded` instead — the encoded prompts as raw prompts (``encoder: none``):
                the same target prompts, masks and router for evaluation and inference, without the encoder
                weights (most of the bytes: 2·d·d_hidden per prompt), as PEFT saves reparameterised prompts.
                Training cannot resume the encoders from such a checkpoint.
        """
        if fold_encoders:
            return self.folded().save(directory)
        directory = Path(directory)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        # each file whole or not at all (a kill or a full disk keeps the previous file; compt.atomic)
        with atomic_file(directory / WEIGHTS_FILE, "wb") as handle:
            handle.write(safetensors_bytes(tensors))
        meta = {"format_version": FORMAT_VERSION, "config": self.config.to_dict()}
        write_text_atomic(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
        return directory

    @torch.no_grad()
    def folded(self) -> PromptBank:
        """An equivalent bank without prompt encoders: every table's raw prompts replaced by its encoded prompts.

        Same ``forward`` output for every mask (encoders taken in eval mode: no encoder dropout), same router.
        """
        values = self.config.to_dict()
        values.update(encoder="none", encoder_hidden=None, encoder_residual=False, encoder_dropout=0.0)
        bank = PromptBank(PromptBankConfig.from_dict(values))
        with evaluating(self):
            for name in ("private", "sources"):
                table = getattr(self, name)
                if table is not None:
                    getattr(bank, name).embedding.copy_(table())
        if self.router is not None:
            bank.router.load_state_dict(self.router.state_dict())
            bank.router.temperature = self.router.temperature
        device = next(self.parameters(), torch.empty(0)).device
        return bank.to(device).train(self.training)

    @classmethod
    def load(
        cls, directory: str | Path, d_model: int | None = None, map_location: str | torch.device = "cpu"
    ) -> PromptBank:
        """Load a bank saved by :meth:`save` (a PEFT adapter's: an unattached
        :class:`~compt.adapters.bank.AdapterBank`). ``d_model``: the backbone's hidden size, checked if given."""
        directory = Path(directory)
        if not (directory / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"no prompt bank in {directory} (expected {CONFIG_FILE} and {WEIGHTS_FILE})"
            )
        try:
            meta = json.loads((directory / CONFIG_FILE).read_text())
            adapter = getattr(METHOD_TRAITS.get(meta["config"].get("method")), "adapter", None)
            weights = None if adapter else load_file(str(directory / WEIGHTS_FILE), device=str(map_location))
        except Exception as err:  # a missing, truncated or overwritten file (OS, json, safetensors errors)
            raise InferenceError(
                f"the prompt bank in {directory} is damaged ({type(err).__name__}: {err}); relaunching "
                "the run's training command rebuilds it from checkpoints/last.ckpt when that exists"
            ) from err
        config = PromptBankConfig.from_dict(meta["config"])
        if d_model is not None and d_model != config.d_model:
            raise InferenceError(
                f"the prompt bank in {directory} was trained for hidden size d={config.d_model} "
                f"(backbone {config.backbone!r}); this backbone has d={d_model}. "
                "Load it with the backbone it was trained on."
            )
        if weights is None:  # a PEFT adapter's bank: its weights are PEFT's files
            return adapter_bank(config).from_saved(directory, config, map_location)
        bank = cls(config)
        bank.load_state_dict(weights)
        return bank.to(map_location)


def new_bank(
    config: PromptBankConfig, vocab_embeddings: Tensor | None = None, generator: torch.Generator | None = None
) -> PromptBank:
    """A fresh bank for ``config`` (the arguments of :class:`PromptBank`): a prompt bank, or for a PEFT adapter
    method (``lora``, ``prefix``) the :class:`~compt.adapters.bank.AdapterBank` that trains it."""
    if config.traits.adapter is None:
        return PromptBank(config, vocab_embeddings, generator)
    return adapter_bank(config)(config, generator)  # PEFT initialises it: no vocabulary rows


def adapter_bank(config: PromptBankConfig) -> Any:
    """The bank class of ``config``'s PEFT adapter (:data:`ADAPTER_BANKS`)."""
    try:
        return ADAPTER_BANKS[config.traits.adapter]
    except KeyError:
        raise RuntimeError(
            f"no bank class is registered for adapter {config.traits.adapter!r}: import compt.adapters.bank "
            "(compt.models.family does)"
        ) from None
