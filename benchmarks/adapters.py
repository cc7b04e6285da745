"""Part 6 (benchmarks/README.md): the PEFT adapter methods, ``method=lora`` and ``method=prefix`` — compt's train
step (its model, :class:`~compt.adapters.bank.AdapterBank`, compt's optimizer) against plain PEFT's on the same
shape and batch (``get_peft_model`` with the same config, PEFT's own forward and loss, AdamW over the same
parameters at the same rate), and against the frozen floor of the text alone.

LoRA's layers go into a backbone in place, so compt and PEFT each get their own copy of the shape's backbone
(the shape's own stays bare for the other parts).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from backbones import BackboneShape
from compt.adapters.peft_setup import peft_config
from compt.models.family import build_model
from compt.optim import OptimConfig
from compt.prompts import PromptBankConfig
from compt.prompts.bank import new_bank
from harness import Bench, Times, medians, ratio, release_memory
from measures import TASKS, make_optimizer, peft_train_step, train_step

#: the adapter methods measured
ADAPTERS = ("lora", "prefix")


@dataclass
class AdapterFigures:
    """compt's adapter train step / plain PEFT's (the wrapper's cost) and / the text-only floor (the adapter's
    own compute included: LoRA's matmuls and weight gradients, the prefix's longer attention)."""

    adapter_times_s: dict[str, float]
    adapter_times_raw_s: Times
    adapter_over_peft: dict[str, float]
    adapter_over_peft_spread: dict[str, list[float]]
    adapter_over_floor: dict[str, float]
    adapter_over_floor_spread: dict[str, list[float]]
    adapter_trainable_params: dict[str, int]


def measure_adapters(shape: BackboneShape, batch: dict, bench: Bench) -> AdapterFigures:
    """Per method, its three configurations timed interleaved (``<method>/floor_0``, ``<method>/compt``,
    ``<method>/peft``), one method after the other so that two backbone copies are alive at a time."""
    from peft import get_peft_model  # optional dependency: the caller handles its absence

    times: Times = {}
    params = {}
    family = "seq2seq" if shape.peft_task_type == "SEQ_2_SEQ_LM" else "causal"
    for method in ADAPTERS:
        config = PromptBankConfig(method=method, task_names=list(TASKS), d_model=shape.d_model)
        bank = new_bank(config, generator=torch.Generator().manual_seed(0))
        model = build_model(copy.deepcopy(shape.backbone), bank).train()
        peft_model = get_peft_model(
            copy.deepcopy(shape.backbone), peft_config(config.adapter, family)
        ).train()
        params[method] = bank.trainable_count()
        assert params[method] == peft_model.get_nb_trainable_parameters()[0]  # the same adapter on both sides
        fns = {
            f"{method}/floor_0": shape.floor_step(batch, batch["input_ids"].shape[1], bench),
            f"{method}/compt": train_step(model, make_optimizer(bank), batch, bench),
            f"{method}/peft": peft_train_step(peft_model, OptimConfig().lr_adapter, shape, batch, bench),
        }
        times.update(bench.interleaved(fns))
        del fns, model, peft_model, bank
        release_memory()
    over_peft = {m: ratio(times, f"{m}/compt", f"{m}/peft") for m in ADAPTERS}
    over_floor = {m: ratio(times, f"{m}/compt", f"{m}/floor_0") for m in ADAPTERS}
    return AdapterFigures(
        adapter_times_s=medians(times),
        adapter_times_raw_s=times,
        adapter_over_peft={m: r for m, (r, _) in over_peft.items()},
        adapter_over_peft_spread={m: s for m, (_, s) in over_peft.items()},
        adapter_over_floor={m: r for m, (r, _) in over_floor.items()},
        adapter_over_floor_spread={m: s for m, (_, s) in over_floor.items()},
        adapter_trainable_params=params,
    )
