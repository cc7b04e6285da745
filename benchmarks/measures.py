"""The five measurements (benchmarks/README.md), each returning a small dataclass whose field names are the
JSON keys of its figures: train step vs floor, the PEFT peer, evaluation, data loading, memory.

Banks, optimizers and the data pipeline are compt's own: the method lengths come from ``conf/method``, the
optimizer from :func:`compt.optim.build_optimizer`, prompt lengths from ``PromptBank.prompt_length``.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from backbones import BackboneShape
from compt.config_dir import default_config_dir
from compt.data import DataConfig
from compt.models.backbone import load_backbone
from compt.models.family import build_model
from compt.models.seq2seq import ComptModel
from compt.models.tokenization import encode_targets
from compt.optim import OptimConfig, build_optimizer
from compt.prompts import PromptBank, PromptBankConfig
from compt.tasks import resolve_tasks
from compt.training.datamodule import ComptDataModule
from harness import Bench, PeakMemory, Times, median, medians, peak_memory, peak_memory_kind, ratio

#: the GLUE task set: T = 8 tasks, so every bank has 8 private prompts (docs/method.md §5)
TASKS = ("mnli", "qnli", "rte", "cola", "sst2", "stsb", "mrpc", "qqp")
#: the label words scored by rank classification (mnli: three candidates)
LABEL_WORDS = ("entailment", "neutral", "contradiction")
#: prompt tokens of the reference floor ``floor_20`` (pt/ssum/msum's target prompt length)
REFERENCE_PROMPT = 20
#: the method whose step is also compared with the reference floor (its prompt is longer: S·L_s = 30)
LONG_PROMPT_METHOD = "mcat"


# ---------------------------------------------------------------------------------------------- compt parts
@cache
def method_lengths(method: str) -> dict[str, Any]:
    """``source_length`` / ``private_length`` of ``conf/method/<method>.yaml`` (e.g. mcat: L_s = 10)."""
    config = yaml.safe_load((default_config_dir() / "method" / f"{method}.yaml").read_text())
    return {key: config[key] for key in ("source_length", "private_length") if config.get(key) is not None}


def make_bank(method: str, shape: BackboneShape, device: torch.device, **overrides: Any) -> PromptBank:
    """A freshly initialised bank of ``method`` for the :data:`TASKS`, with the method's configured lengths."""
    config = PromptBankConfig(
        method=method,
        task_names=list(TASKS),
        d_model=shape.d_model,
        **{**method_lengths(method), **overrides},
    )
    vocab = shape.backbone.get_input_embeddings().weight
    return PromptBank(config, vocab, torch.Generator().manual_seed(0)).to(device)


def make_optimizer(bank: PromptBank) -> torch.optim.Optimizer:
    """compt's AdamW over the bank's groups at the configured rates (``total_steps=1``: no warm-up, so
    every group runs at its full learning rate)."""
    optimizer, _ = build_optimizer(bank, OptimConfig(), total_steps=1)
    return optimizer


def train_step(model: ComptModel, optimizer: torch.optim.Optimizer, batch: dict, bench: Bench):
    """One optimizer step of ``model`` on ``batch``: zero grad, forward (autocast), backward, step."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with bench.autocast():
            loss = model(**batch)
        loss.backward()
        optimizer.step()

    return step


def method_step(method: str, shape: BackboneShape, batch: dict, bench: Bench, **overrides: Any):
    """The train step of a fresh ``method`` bank on ``shape``, and the bank."""
    bank = make_bank(method, shape, bench.device, **overrides)
    return train_step(build_model(shape.backbone, bank).train(), make_optimizer(bank), batch, bench), bank


# ---------------------------------------------------------------------------------------------- 1. train
@dataclass
class TrainFigures:
    """Part 1: compt's train step per method against the floor of the same total length."""

    train_times_s: dict[str, float]
    train_times_raw_s: Times
    step_over_floor: dict[str, float]
    step_over_floor_spread: dict[str, list[float]]
    train_examples_per_s: dict[str, float]
    train_tflops_per_s: dict[str, float]
    mcat_over_floor_20: float | None = None
    mcat_over_floor_20_spread: list[float] | None = None
    flops_formula: str = ""


def measure_train(shape: BackboneShape, batch: dict, methods: Sequence[str], bench: Bench) -> TrainFigures:
    n_batch, n_tokens = batch["input_ids"].shape
    target = batch["labels"].shape[1]
    fns: dict[str, Callable[[], Any]] = {}
    floors, lengths = {}, {}
    for method in methods:
        fns[method], bank = method_step(method, shape, batch, bench)
        lengths[method] = bank.prompt_length
        floors[method] = f"floor_{bank.prompt_length}"
        if floors[method] not in fns:
            fns[floors[method]] = shape.floor_step(batch, n_tokens + bank.prompt_length, bench)
    reference = f"floor_{REFERENCE_PROMPT}"
    if LONG_PROMPT_METHOD in methods and reference not in fns:
        fns[reference] = shape.floor_step(batch, n_tokens + REFERENCE_PROMPT, bench)
    times = bench.interleaved(fns)
    over = {method: ratio(times, method, floors[method]) for method in methods}
    long = ratio(times, LONG_PROMPT_METHOD, reference) if LONG_PROMPT_METHOD in methods else (None, None)
    seconds = medians(times)
    return TrainFigures(
        train_times_s=seconds,
        train_times_raw_s=times,
        step_over_floor={m: r for m, (r, _) in over.items()},
        step_over_floor_spread={m: spread for m, (_, spread) in over.items()},
        train_examples_per_s={m: n_batch / seconds[m] for m in methods},
        train_tflops_per_s={
            m: shape.step_flops(n_batch, n_tokens + lengths[m], target) / seconds[m] / 1e12 for m in methods
        },
        mcat_over_floor_20=long[0],
        mcat_over_floor_20_spread=long[1],
        flops_formula=shape.flops_formula,
    )


# ---------------------------------------------------------------------------------------------- 2. peer
@dataclass
class PeerFigures:
    """Part 2: Hugging Face PEFT prompt tuning vs compt ``pt`` (a raw prompt before the text, as PEFT's)."""

    peer_times_s: dict[str, float]
    peer_times_raw_s: Times
    pt_over_peft: float
    pt_over_peft_spread: list[float]
    pt_mlp_over_peft: float
    pt_mlp_over_peft_spread: list[float]


def measure_peer(shape: BackboneShape, batch: dict, bench: Bench) -> PeerFigures:
    from peft import PromptTuningConfig, get_peft_model  # optional dependency: the caller handles its absence

    raw_step, raw = method_step("pt", shape, batch, bench, position="before", encoder="none")
    mlp_step, _ = method_step("pt", shape, batch, bench)
    config = PromptTuningConfig(task_type=shape.peft_task_type, num_virtual_tokens=raw.prompt_length)
    peft_model = get_peft_model(shape.backbone, config).train()
    peft_step = peft_train_step(peft_model, OptimConfig().lr_private, shape, batch, bench)  # compt's pt rate
    times = bench.interleaved(
        {"peft": peft_step, "compt_pt_before_raw": raw_step, "compt_pt_default_mlp": mlp_step}
    )
    if hasattr(peft_model, "unload"):  # give the backbone back unwrapped for the later parts
        with contextlib.suppress(Exception):
            peft_model.unload()
    raw_over, raw_spread = ratio(times, "compt_pt_before_raw", "peft")
    mlp_over, mlp_spread = ratio(times, "compt_pt_default_mlp", "peft")
    return PeerFigures(medians(times), times, raw_over, raw_spread, mlp_over, mlp_spread)


def peft_train_step(peft_model: Any, lr: float, shape: BackboneShape, batch: dict, bench: Bench):
    """Plain PEFT's train step: its forward and loss on the batch as PEFT takes it, AdamW over its trainable
    parameters at ``lr`` (compt's eps and weight decay)."""
    optim = OptimConfig()
    optimizer = torch.optim.AdamW(
        [p for p in peft_model.parameters() if p.requires_grad],
        lr=lr,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
    )
    peft_batch = shape.peft_batch(batch)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with bench.autocast():
            loss = peft_model(**peft_batch).loss
        loss.backward()
        optimizer.step()

    return step


# ---------------------------------------------------------------------------------------------- 3. eval
@dataclass
class EvalFigures:
    """Part 3: examples/s of greedy generation vs rank scoring of the label-word candidates."""

    eval_times_s: dict[str, float]
    eval_times_raw_s: Times
    eval_examples_per_s: dict[str, float]
    rank_over_generate: float
    rank_over_generate_spread: list[float]
    #: generate time / encoder-only time: the most a scorer that needs the encoder pass can gain
    rank_over_generate_bound: float
    eval_setup: dict[str, Any] = field(default_factory=dict)


def candidate_labels(shape: BackboneShape, batch: int, target_len: int, device: torch.device):
    """``(B, C, M)`` label-word candidates: the mnli words as compt's tokenisation makes them targets when the
    shape has a tokenizer that fits the backbone, else random ids of ``target_len`` tokens ending with EOS
    (C = 3). Returns the candidates and max_new_tokens."""
    config = shape.backbone.config
    if shape.tokenizer is not None and len(shape.tokenizer) <= config.vocab_size:
        ids = encode_targets(shape.tokenizer, LABEL_WORDS)
    else:
        g = torch.Generator().manual_seed(2)
        lengths = [target_len, target_len - 1, target_len]
        ids = [
            [*torch.randint(3, config.vocab_size, (n - 1,), generator=g).tolist(), config.eos_token_id]
            for n in lengths
        ]
    width = max(len(x) for x in ids)
    cands = torch.full((len(ids), width), -100, dtype=torch.long)
    for i, row in enumerate(ids):
        cands[i, : len(row)] = torch.tensor(row)
    return cands.unsqueeze(0).expand(batch, -1, -1).contiguous().to(device), width


def measure_eval(shape: BackboneShape, batch: dict[str, Tensor], bench: Bench) -> EvalFigures:
    model = build_model(shape.backbone, make_bank("ssum", shape, bench.device)).eval()
    n_batch = batch["input_ids"].shape[0]
    cands, max_new = candidate_labels(shape, n_batch, batch["labels"].shape[1], bench.device)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "task_ids")}
    generated: list[int] = []

    def generate() -> None:
        with bench.autocast():
            ids = model.generate(**inputs, max_new_tokens=max_new)
        generated.append(ids.shape[1] - (model.family == "seq2seq"))  # T5 returns its start token too

    def rank() -> None:
        with bench.autocast():
            model.score_candidates(**inputs, candidate_labels=cands)

    def encoder() -> None:  # the part both share (bounds the ratio)
        with torch.no_grad(), bench.autocast():
            shape.shared_pass(model, inputs)

    times = bench.interleaved({"generate": generate, "rank": rank, "encoder_only": encoder})
    seconds = medians(times)
    over, spread = ratio(times, "generate", "rank")  # time ratio gen/rank = throughput ratio rank/gen
    return EvalFigures(
        eval_times_s=seconds,
        eval_times_raw_s=times,
        eval_examples_per_s={name: n_batch / t for name, t in seconds.items()},
        rank_over_generate=over,
        rank_over_generate_spread=spread,
        rank_over_generate_bound=seconds["generate"] / seconds["encoder_only"],
        eval_setup={
            "candidates": int(cands.shape[1]),
            "candidate_tokens": int(cands.shape[2]),
            "max_new_tokens": int(max_new),
            "generated_tokens": int(max(generated)),
            "predictor": f"{type(model).__name__}.generate / .score_candidates",
        },
    )


# ---------------------------------------------------------------------------------------------- 4. data
@dataclass
class DataFigures:
    """Part 4: time per batch from the DataModule's train loader relative to a train step."""

    #: the method whose train step is the reference
    data_reference_step: str
    data_time_per_batch_s: float
    data_batches_timed: int
    data_over_step: float


def measure_data(
    tokenizer: Any, batch_size: int, reference: str, step_time: float, bench: Bench
) -> DataFigures:
    """Bundled demo data, k = 16, after one full pass (so the encoded cache exists); includes the copy to
    the device. ``tokenizer`` None (a shape without one): the tiny T5's."""
    if tokenizer is None:
        tokenizer = load_backbone("tiny")[1]
    config = DataConfig(source="local", k=16, seed=0, batch_size=batch_size)
    dm = ComptDataModule(resolve_tasks("demo"), tokenizer, config)
    dm.setup("fit")
    for _ in dm.train_dataloader():  # one full pass: caching, tokenisation, worker start-up
        pass
    per_batch: list[float] = []
    for _ in range(max(1, bench.repeats)):
        loader = iter(dm.train_dataloader())
        while True:
            bench.sync()
            start = time.perf_counter()
            try:
                item = next(loader)
            except StopIteration:
                break
            _ = {k: v.to(bench.device, non_blocking=True) for k, v in item.items() if torch.is_tensor(v)}
            bench.sync()
            per_batch.append(time.perf_counter() - start)
    per = median(per_batch)
    return DataFigures(reference, per, len(per_batch), per / step_time)


# ---------------------------------------------------------------------------------------------- 5. memory
@dataclass
class MemoryFigures:
    """Part 5: peak memory of one train step, and the bank's checkpoint size on disk (with and without
    its prompt encoders)."""

    peak_mem_bytes: dict[str, int]
    peak_mem_delta_bytes: dict[str, int]
    peak_mem_kind: str
    backbone_param_bytes: int
    ckpt_bytes: dict[str, int]
    ckpt_over_backbone: dict[str, float]
    ckpt_folded_bytes: dict[str, int]
    ckpt_folded_over_backbone: dict[str, float]


def dir_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


def measure_memory(shape: BackboneShape, batch: dict, methods: Sequence[str], bench: Bench) -> MemoryFigures:
    n_tokens = batch["input_ids"].shape[1]
    steps = {f"floor_{REFERENCE_PROMPT}": shape.floor_step(batch, n_tokens + REFERENCE_PROMPT, bench)}
    banks = {}
    for method in methods:
        steps[method], banks[method] = method_step(method, shape, batch, bench)
    peaks: dict[str, PeakMemory] = {name: peak_memory(step, bench) for name, step in steps.items()}
    backbone_bytes = sum(p.numel() * p.element_size() for p in shape.backbone.parameters())
    saved, folded = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for method, bank in banks.items():
            saved[method] = dir_bytes(bank.save(Path(tmp) / method))
            folded[method] = dir_bytes(bank.save(Path(tmp) / f"{method}-folded", fold_encoders=True))
    return MemoryFigures(
        peak_mem_bytes={name: p.peak_bytes for name, p in peaks.items()},
        peak_mem_delta_bytes={name: p.delta_bytes for name, p in peaks.items()},
        peak_mem_kind=peak_memory_kind(bench),
        backbone_param_bytes=backbone_bytes,
        ckpt_bytes=saved,
        ckpt_over_backbone={m: b / backbone_bytes for m, b in saved.items()},
        ckpt_folded_bytes=folded,
        ckpt_folded_over_backbone={m: b / backbone_bytes for m, b in folded.items()},
    )
