"""A PEFT adapter in the place of a prompt bank: ``method=lora`` and ``method=prefix``.

:class:`AdapterBank` is a :class:`~compt.prompts.bank.PromptBank` without prompts (its target prompt has no
rows), so everything built around a bank takes it unchanged: the Lightning module, the optimizer, checkpoints
and ``resume``, the divergence guard, ``callbacks.restore_best``, ``compt predict`` / ``evaluate`` / ``export``.
What it trains is a PEFT adapter on the frozen backbone, one adapter shared by every task (the task is named in
the text, as compt's input format does for every method):

* built from its config, then :meth:`attach` ed to the backbone (:func:`compt.models.family.build_model` does it):
  ``peft.get_peft_model(backbone, LoraConfig | PrefixTuningConfig)`` — LoRA's layers go into the backbone, in
  place; a prefix is a key/value cache every attention layer starts from (:meth:`kv_prefix`);
* PEFT's adapter parameters are registered here too, under ``adapter.``: ``parameters()`` are exactly those PEFT
  trains (``trainable_parameters`` in results.json is PEFT's count), checkpoints hold them (the backbone's
  weights are left out of checkpoints, the LoRA layers in it included: their weights live here as well), and the
  optimizer gives them the ``adapter`` group (``optim.lr.adapter``);
* saved as PEFT saves it (``adapter_config.json`` + ``adapter_model.safetensors``, :meth:`save`) beside compt's
  ``prompt_bank.json``, so a run's ``bank/`` folder is a PEFT adapter; loaded back (:meth:`from_saved`), it is
  attached with ``peft.PeftModel.from_pretrained``, as any PEFT user loads it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from compt.adapters.options import ADAPTER_OPTIONS
from compt.adapters.peft_setup import (
    PEFT_FILES,
    fresh_adapter,
    load_weights,
    peft_config,
    saved_adapter,
    saved_weights,
)
from compt.atomic import make_folder, write_text_atomic
from compt.errors import ConfigError, InferenceError
from compt.models.backbone import backbone_family
from compt.prompts.bank import ADAPTER_BANKS, CONFIG_FILE, FORMAT_VERSION, PromptBank
from compt.prompts.config import PromptBankConfig
from compt.prompts.masks import PromptMask
from compt.utils import share_like_new_file

#: state-dict keys of a saved adapter's weights (PEFT's keys behind it) before it meets a backbone
SAVED_PREFIX = "peft:"


class AdapterBank(PromptBank):
    """The adapter of ``config.method`` (``lora`` | ``prefix``; its settings: ``config.adapter``).

    Args:
        config: the bank's configuration (an adapter method's).
        generator: seeds the adapter's initialisation (the same state gives the same adapter whatever torch's
            global random state); None: torch's global random state.
    """

    def __init__(self, config: PromptBankConfig, generator: torch.Generator | None = None) -> None:
        if config.traits.adapter is None:
            raise ValueError(f"method {config.method!r} trains prompts, not an adapter: use PromptBank")
        super().__init__(config)
        #: PEFT's adapter parameters, by their PEFT names (dots written as ``/``); filled by :meth:`attach`
        self.adapter = nn.ParameterDict()
        self._seed = (
            None if generator is None else int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        )
        self._saved: Path | None = None
        self._saved_weights: dict[str, Tensor] | None = None
        object.__setattr__(self, "_peft", None)  # the PEFT model: not a submodule (it holds the backbone)

    # ------------------------------------------------------------------ the backbone
    @property
    def peft(self) -> Any:
        """The PEFT model wrapping the backbone (``peft.PeftModel``)."""
        if self._peft is None:
            raise ValueError(
                "this adapter has not met its backbone yet: build the model with compt.build_model"
            )
        return self._peft

    def attach(self, backbone: PreTrainedModel) -> None:
        """Wrap ``backbone`` (frozen) in this adapter: a fresh one (seeded), or the saved one (``from_saved``)."""
        if self._peft is not None:
            raise ValueError("this adapter is attached to a backbone already")
        if self.config.traits.adapter == "prefix" and getattr(backbone, "is_activation_checkpointing", False):
            raise ConfigError(
                "method=prefix: PEFT's prefix tuning does not work with activation checkpointing; set "
                "model.activation_checkpointing=false (method=lora works with it)"
            )
        base = {id(p) for p in backbone.parameters()}
        if self._saved is not None:
            model = saved_adapter(backbone, self._saved, self.method)
        else:
            config = peft_config(self.config.adapter, backbone_family(backbone), method=self.method)
            model = fresh_adapter(backbone, config, self._seed, self.method)
        object.__setattr__(self, "_peft", model)
        for name, parameter in model.named_parameters():
            if id(parameter) not in base:
                self.adapter[name.removeprefix("base_model.model.").replace(".", "/")] = parameter

    def kv_prefix(self, batch_size: int) -> object | None:
        """PEFT's key/value prefix for ``batch_size`` examples (a transformers cache, trainable), or None for LoRA."""
        if self.config.traits.adapter != "prefix":
            return None
        return self.peft.get_prompt(batch_size)

    def trainable_count(self) -> int:
        """Trainable parameters as PEFT counts them (``PeftModel.get_nb_trainable_parameters``)."""
        return int(self.peft.get_nb_trainable_parameters()[0])

    # ------------------------------------------------------------------ no prompt
    def forward(
        self, mask: PromptMask | str | None = None, task_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """No prompt: ``(T, 0, d)`` (``(B, 0, d)`` with ``task_ids``), which ``example_prompts`` gathers per example
        as for any bank; a mask other than ``total`` is refused."""
        self.resolve_mask(mask)
        rows = self.config.n_tasks if task_ids is None else len(task_ids)
        device = next(iter(self.adapter.values())).device if len(self.adapter) else None
        return torch.zeros(rows, 0, self.config.d_model, device=device), None

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """One optimizer group, ``adapter`` (``optim.lr.adapter``); the prompt groups are empty."""
        return {
            "router": [],
            "sources": [],
            "private": [],
            "adapter": [p for p in self.adapter.values() if p.requires_grad],
        }

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, fold_encoders: bool = False) -> Path:
        """Write the adapter as PEFT saves it (``save_pretrained``: ``adapter_config.json``,
        ``adapter_model.safetensors``), then ``prompt_bank.json``; each file whole or not at all.
        (``fold_encoders`` is a prompt bank's option: PEFT already saves a projected prefix folded.)"""
        directory = make_folder(directory)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".peft-") as build:
            self.peft.save_pretrained(build)
            for name in PEFT_FILES:
                share_like_new_file(Path(build) / name)  # safetensors writes 0600
                os.replace(Path(build) / name, directory / name)
        meta = {"format_version": FORMAT_VERSION, "config": self.config.to_dict()}
        write_text_atomic(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_saved(
        cls, directory: Path, config: PromptBankConfig, map_location: str | torch.device = "cpu"
    ) -> AdapterBank:
        """The adapter saved in ``directory`` (by :meth:`save`), to :meth:`attach` to its backbone.

        Raises:
            InferenceError: PEFT's files are missing or damaged.
        """
        bank = cls(config)
        try:
            bank._saved_weights = saved_weights(directory, config.method)
            json.loads((directory / PEFT_FILES[0]).read_text())
        except Exception as err:  # a missing, truncated or overwritten file (OS, json, safetensors errors)
            raise InferenceError(
                f"the PEFT adapter in {directory} is damaged or missing ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); relaunching the run's training command "
                "rebuilds it from checkpoints/last.ckpt when that exists"
            ) from err
        bank._saved = directory
        return bank

    def folded(self) -> AdapterBank:
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The adapter's parameters; before it meets its backbone, a saved adapter's weights under PEFT's keys
        (prefixed ``peft:``), which :meth:`load_state_dict` of an attached adapter takes (``compt evaluate``)."""
        if self._peft is None and self._saved_weights is not None:
            return {SAVED_PREFIX + key: value for key, value in self._saved_weights.items()}
        return super().state_dict(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """``nn.Module.load_state_dict``, or a saved adapter's weights (keys ``peft:...``) loaded by PEFT.

        Raises:
            InferenceError: a prefix trained through its projection MLP (``method.prefix_projection=true``): PEFT
                saves the projected prefix, which this trainable adapter cannot take (use a checkpoint).
        """
        saved = {k.removeprefix(SAVED_PREFIX): v for k, v in state_dict.items() if k.startswith(SAVED_PREFIX)}
        if not saved:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        if getattr(self.config.adapter, "prefix_projection", False):
            raise InferenceError(
                "this prefix was trained through its projection MLP (method.prefix_projection=true) and saved "
                "projected, as PEFT saves it: evaluate it from a checkpoint (--checkpoint RUN_DIR/checkpoints/last.ckpt)"
            )
        missing = load_weights(self.peft, saved, self.method)
        if strict and missing:
            raise InferenceError(f"the saved adapter lacks weights this one has: {missing[:3]}")
        return None


#: ``PromptBank.load`` and ``new_bank`` build this class for both adapter methods
ADAPTER_BANKS.update(dict.fromkeys(ADAPTER_OPTIONS, AdapterBank))
