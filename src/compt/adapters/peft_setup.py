"""The one place where compt meets PEFT: an adapter's settings as PEFT's own config, and the frozen backbone
wrapped in a fresh or a saved adapter. PEFT is imported here, on first use (it takes seconds to import, and
``[peft]`` is an optional extra).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from transformers import PreTrainedModel

from compt.adapters.options import LoraOptions, PrefixOptions
from compt.errors import ConfigError

#: backbone family -> PEFT's task type
PEFT_TASK_TYPES = {"seq2seq": "SEQ_2_SEQ_LM", "causal": "CAUSAL_LM"}
#: PEFT's name of the one adapter compt trains
ADAPTER_NAME = "default"
#: the files of a saved PEFT adapter (``save_pretrained``): its config, then its weights
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def require_peft(method: str) -> ModuleType:
    """The ``peft`` package.

    Raises:
        ConfigError: it is not installed (naming the extra that installs it).
    """
    try:
        return importlib.import_module("peft")
    except ImportError:
        raise ConfigError(
            f"method={method} trains a PEFT adapter and needs the peft package: pip install -e '.[peft]' "
            "(or pip install 'peft>=0.17')"
        ) from None


def peft_config(
    options: LoraOptions | PrefixOptions, family: str, base_model: str | None = None, method: str = "lora"
) -> Any:
    """PEFT's ``LoraConfig`` or ``PrefixTuningConfig`` for ``options`` on a backbone of ``family``
    (``base_model``: its name or directory, recorded in ``adapter_config.json``)."""
    peft = require_peft(method)
    common = {"task_type": PEFT_TASK_TYPES[family], "base_model_name_or_path": base_model}
    if isinstance(options, LoraOptions):
        targets = options.lora_target_modules
        return peft.LoraConfig(
            r=options.lora_r,
            lora_alpha=options.lora_alpha,
            lora_dropout=options.lora_dropout,
            target_modules=list(targets) if targets is not None else None,
            **common,
        )
    return peft.PrefixTuningConfig(
        num_virtual_tokens=options.prefix_length,
        prefix_projection=options.prefix_projection,
        encoder_hidden_size=options.prefix_hidden if options.prefix_projection else None,
        **common,
    )


def fresh_adapter(
    backbone: PreTrainedModel, config: Any, seed: int | None = None, method: str = "lora"
) -> Any:
    """``peft.get_peft_model(backbone, config)``: a new adapter on ``backbone`` (LoRA's layers go into it, in
    place), initialised from ``seed`` whatever torch's global random state (None: from that state)."""
    peft = require_peft(method)
    with quiet_peft(), torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return peft.get_peft_model(backbone, config)


def saved_adapter(backbone: PreTrainedModel, directory: Path, method: str = "lora") -> Any:
    """``peft.PeftModel.from_pretrained(backbone, directory)``: the adapter saved in ``directory``, for inference
    (as a PEFT user loads it)."""
    peft = require_peft(method)
    with quiet_peft():
        return peft.PeftModel.from_pretrained(backbone, str(directory))


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Leave out the warning PEFT 0.21 causes at every wrap under transformers 5.x (it asks for the old name of
    the activation-checkpointing flag): it says nothing about the run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated")
        yield


def saved_weights(directory: Path, method: str = "lora") -> dict[str, torch.Tensor]:
    """The adapter weights PEFT saved in ``directory`` (``adapter_model.safetensors``), by PEFT's keys."""
    return require_peft(method).utils.load_peft_weights(str(directory), device="cpu")


def load_weights(adapter: Any, weights: dict[str, torch.Tensor], method: str = "lora") -> list[str]:
    """Load PEFT-format ``weights`` into ``adapter`` (a PEFT model); returns the adapter keys it lacked (a prefix's
    encoder is loaded on its own by PEFT, which raises when its weights are missing)."""
    result = require_peft(method).set_peft_model_state_dict(adapter, weights, adapter_name=ADAPTER_NAME)
    return [
        k for k in result.missing_keys if f".{ADAPTER_NAME}." in k and not k.startswith("prompt_encoder.")
    ]
