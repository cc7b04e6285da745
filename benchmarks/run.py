#!/usr/bin/env python
"""compt benchmark harness: train-step overhead, PEFT peer, evaluation, data and memory (benchmarks/README.md).

A script, not a timed test. Writes one JSON (``--out``) and prints a table. Every figure is the median of
``--repeats`` runs after warm-up; configurations that are compared are timed interleaved, round by round, so
that slow drifts of the machine hit both sides of a ratio alike. ``*_spread`` entries give the min and max of
the per-round paired ratios.

    python benchmarks/run.py --out bench.json            # tiny + t5-base shapes (make bench)
    python benchmarks/run.py --quick --out bench.json    # tiny only, CI-sized (< 1 minute)
"""

from __future__ import annotations

import os

for _key, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("HF_DATASETS_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("WANDB_MODE", "disabled"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_key, _value)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from compt.backbone import freeze, load_backbone  # noqa: E402
from compt.model import ComptModel  # noqa: E402
from compt.prompts import PromptBank, PromptBankConfig  # noqa: E402

warnings.filterwarnings("ignore")

METHODS = ("pt", "ssum", "msum", "mcat")
SHAPES = ("tiny", "t5-base")
#: the GLUE task set: T = 8 tasks, so every bank has 8 private prompts (METHOD.md §5)
TASKS = ("mnli", "qnli", "rte", "cola", "sst2", "stsb", "mrpc", "qqp")
#: the label words scored by rank classification (mnli: three candidates)
LABEL_WORDS = ("entailment", "neutral", "contradiction")
PARTS = ("train", "peer", "eval", "data", "memory")
#: t5-base's architecture (random weights: the compute cost does not depend on them)
T5_BASE = dict(
    d_model=768,
    d_ff=3072,
    num_layers=12,
    num_decoder_layers=12,
    num_heads=12,
    d_kv=64,
    vocab_size=32128,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
)


# ---------------------------------------------------------------------------------------------- helpers
class Bench:
    """Device, precision and timing for one run."""

    def __init__(self, device: torch.device, dtype: str, repeats: int, warmup: int) -> None:
        self.device, self.dtype, self.repeats, self.warmup = device, dtype, repeats, warmup
        self.cuda = device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def time_once(self, fn: Callable[[], Any]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def interleaved(
        self, fns: dict[str, Callable[[], Any]], repeats: int | None = None
    ) -> dict[str, list[float]]:
        """Warm every function up, then time them round by round (order rotated each round)."""
        repeats = repeats or self.repeats
        names = list(fns)
        for name in names:
            for _ in range(self.warmup):
                fns[name]()
        times: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(repeats):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(self.time_once(fns[name]))
        return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def ratio(times: dict[str, list[float]], num: str, den: str) -> tuple[float, list[float]]:
    """Ratio of medians, and [min, max] of the per-round paired ratios."""
    paired = [a / b for a, b in zip(times[num], times[den])]
    return median(times[num]) / median(times[den]), [min(paired), max(paired)]


def param_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def machine_info(device: torch.device, dtype: str) -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "dtype": dtype,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    with contextlib.suppress(ImportError):
        import transformers

        info["transformers"] = transformers.__version__
    with contextlib.suppress(ImportError):
        import peft

        info["peft"] = peft.__version__
    return info


# ---------------------------------------------------------------------------------------------- setup
def build_backbone(shape: str, device: torch.device):
    """The frozen backbone of ``shape`` and a tokenizer when one matches its vocabulary (else None)."""
    if shape == "tiny":
        backbone, tokenizer = load_backbone("tiny")
    elif shape == "t5-base":
        from transformers import T5Config, T5ForConditionalGeneration

        torch.manual_seed(0)
        backbone, tokenizer = freeze(T5ForConditionalGeneration(T5Config(**T5_BASE))), None
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    return backbone.to(device), tokenizer


def make_batch(backbone, batch: int, n_tokens: int, target_len: int, device: torch.device, seed: int = 0):
    """A full-length (no padding) encoder batch ending in </s>, targets of ``target_len`` tokens, mixed tasks."""
    vocab = backbone.config.vocab_size
    eos = backbone.config.eos_token_id
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (batch, n_tokens), generator=g)
    input_ids[:, -1] = eos
    labels = torch.randint(3, vocab, (batch, target_len), generator=g)
    labels[:, -1] = eos
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones(batch, n_tokens, dtype=torch.long, device=device),
        "task_ids": (torch.arange(batch) % len(TASKS)).to(device),
        "labels": labels.to(device),
    }


def make_bank(method: str, backbone, device: torch.device, **overrides) -> PromptBank:
    d_model = backbone.get_input_embeddings().embedding_dim
    source_length = 10 if method == "mcat" else 20  # mcat: S·L_s = 30 (METHOD.md §2)
    config = PromptBankConfig(
        method=method, task_names=list(TASKS), d_model=d_model, source_length=source_length, **overrides
    )
    vocab = backbone.get_input_embeddings().weight
    return PromptBank(config, vocab, torch.Generator().manual_seed(0)).to(device)


def make_optimizer(bank: PromptBank) -> torch.optim.Optimizer:
    """AdamW over the bank's three groups with METHOD.md §4's learning rates (empty groups left out)."""
    lrs = {"router": 0.1, "sources": 0.05, "private": 0.02}
    groups = [
        {"params": params, "lr": lrs[name], "name": name}
        for name, params in bank.parameter_groups().items()
        if params
    ]
    return torch.optim.AdamW(groups, eps=1e-6, weight_decay=0.0)


def compt_step(model: ComptModel, optimizer: torch.optim.Optimizer, batch: dict, bench: Bench):
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with bench.autocast():
            loss = model(**batch)
        loss.backward()
        optimizer.step()

    return step


def floor_step(backbone, batch: dict, total_len: int, bench: Bench):
    """The frozen backbone's forward + backward w.r.t. a leaf ``inputs_embeds`` of the same total length."""
    n_batch = batch["input_ids"].shape[0]
    d_model = backbone.get_input_embeddings().embedding_dim
    g = torch.Generator().manual_seed(1)
    embeds = torch.randn(n_batch, total_len, d_model, generator=g).to(bench.device).requires_grad_(True)
    mask = torch.ones(n_batch, total_len, dtype=torch.long, device=bench.device)
    labels = batch["labels"]

    def step() -> None:
        embeds.grad = None
        with bench.autocast():
            loss = backbone(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        loss.backward()

    return step


def step_flops(backbone, batch: int, enc_tokens: int, dec_tokens: int) -> float:
    """FLOPs of one frozen-backbone train step: 4·N·tokens per stack (forward 2N + backward w.r.t.
    activations 2N; no weight gradients), N = the stack's non-embedding parameters; LM head 4·V·d per
    target token. Attention-score FLOPs are left out."""
    embed = backbone.get_input_embeddings().weight.numel()
    n_enc = sum(p.numel() for p in backbone.get_encoder().parameters()) - embed
    n_dec = sum(p.numel() for p in backbone.get_decoder().parameters()) - embed
    return 4.0 * batch * (n_enc * enc_tokens + n_dec * dec_tokens + embed * dec_tokens)


# ---------------------------------------------------------------------------------------------- memory
class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled by a thread (CPU)."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory(step: Callable[[], Any], bench: Bench) -> dict[str, int]:
    """Peak memory of one train step (after warm-up): CUDA max allocated, or CPU max RSS delta."""
    step()  # warm-up: optimizer state, autograd caches
    if bench.cuda:
        bench.sync()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(bench.device)
        torch.cuda.reset_peak_memory_stats(bench.device)
        step()
        bench.sync()
        peak = torch.cuda.max_memory_allocated(bench.device)
        return {"peak_mem_bytes": int(peak), "peak_mem_delta_bytes": int(peak - base)}
    release_memory()
    try:
        with PeakRSS() as rss:
            step()
        delta = rss.peak - rss.start
    except ImportError:  # no psutil: the process-lifetime high-water mark (only grows)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        step()
        delta = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"peak_mem_bytes": int(delta), "peak_mem_delta_bytes": int(delta)}


def dir_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


# ---------------------------------------------------------------------------------------------- parts
def bench_train(backbone, batch, methods, bench: Bench, out: dict) -> None:
    """Part 1: compt train step per method against the floor(s) of the same total length."""
    n_tokens = batch["input_ids"].shape[1]
    fns: dict[str, Callable[[], Any]] = {}
    floors: dict[str, str] = {}
    for method in methods:
        bank = make_bank(method, backbone, bench.device)
        model = ComptModel(backbone, bank).train()
        total = n_tokens + bank.prompt_length
        floor_name = f"floor_{bank.prompt_length}"
        if floor_name not in fns:
            fns[floor_name] = floor_step(backbone, batch, total, bench)
        floors[method] = floor_name
        fns[method] = compt_step(model, make_optimizer(bank), batch, bench)
    if "mcat" in methods and "floor_20" not in fns:
        fns["floor_20"] = floor_step(backbone, batch, n_tokens + 20, bench)
    times = bench.interleaved(fns)
    out["train_times_s"] = {name: median(t) for name, t in times.items()}
    out["train_times_raw_s"] = times
    out["step_over_floor"], out["step_over_floor_spread"] = {}, {}
    for method in methods:
        out["step_over_floor"][method], out["step_over_floor_spread"][method] = ratio(
            times, method, floors[method]
        )
    if "mcat" in methods:
        out["mcat_over_floor_20"], out["mcat_over_floor_20_spread"] = ratio(times, "mcat", "floor_20")
    n_batch = batch["input_ids"].shape[0]
    target = batch["labels"].shape[1]
    out["train_examples_per_s"] = {m: n_batch / out["train_times_s"][m] for m in methods}
    out["train_tflops_per_s"] = {}
    for method in methods:
        length = n_tokens + (30 if method == "mcat" else 20)
        flops = step_flops(backbone, n_batch, length, target)
        out["train_tflops_per_s"][method] = flops / out["train_times_s"][method] / 1e12
    out["flops_formula"] = (
        "per step: 4*B*(N_enc*T_enc + N_dec*T_dec + V*d*T_dec); N_enc/N_dec = non-embedding parameters of "
        "the encoder/decoder stack, T_enc = text + prompt tokens, T_dec = target tokens, V*d = tied LM head; "
        "4 = forward 2N + backward w.r.t. activations 2N (frozen weights: no weight gradients)"
    )


def bench_peer(backbone, batch, bench: Bench, out: dict) -> None:
    """Part 2: Hugging Face PEFT prompt tuning vs compt pt (prompt before the text, raw prompt)."""
    try:
        from peft import PromptTuningConfig, TaskType, get_peft_model
    except ImportError as err:
        out["pt_over_peft"] = f"skipped: peft not installed ({err})"
        return
    peft_model = get_peft_model(
        backbone, PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=20)
    ).train()
    peft_opt = torch.optim.AdamW(
        [p for p in peft_model.parameters() if p.requires_grad], lr=0.02, eps=1e-6, weight_decay=0.0
    )
    peft_batch = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}

    def peft_step() -> None:
        peft_opt.zero_grad(set_to_none=True)
        with bench.autocast():
            loss = peft_model(**peft_batch).loss
        loss.backward()
        peft_opt.step()

    raw = make_bank("pt", backbone, bench.device, position="before", encoder="none")
    mlp = make_bank("pt", backbone, bench.device)
    fns = {
        "peft": peft_step,
        "compt_pt_before_raw": compt_step(
            ComptModel(backbone, raw).train(), make_optimizer(raw), batch, bench
        ),
        "compt_pt_default_mlp": compt_step(
            ComptModel(backbone, mlp).train(), make_optimizer(mlp), batch, bench
        ),
    }
    times = bench.interleaved(fns)
    out["peer_times_s"] = {name: median(t) for name, t in times.items()}
    out["peer_times_raw_s"] = times
    out["pt_over_peft"], out["pt_over_peft_spread"] = ratio(times, "compt_pt_before_raw", "peft")
    out["pt_mlp_over_peft"], out["pt_mlp_over_peft_spread"] = ratio(times, "compt_pt_default_mlp", "peft")
    with contextlib.suppress(Exception):
        peft_model.unload() if hasattr(peft_model, "unload") else None


def candidate_labels(tokenizer, backbone, batch: int, target_len: int, device: torch.device):
    """``(B, C, M)`` label-word candidates: the mnli words through ``tokenizer`` when it fits the backbone,
    else random ids of ``target_len`` tokens (C = 3). Returns the candidates and max_new_tokens."""
    eos = backbone.config.eos_token_id
    if tokenizer is not None and len(tokenizer) <= backbone.config.vocab_size:
        ids = [tokenizer(w, add_special_tokens=True)["input_ids"] for w in LABEL_WORDS]
    else:
        g = torch.Generator().manual_seed(2)
        lengths = [target_len, target_len - 1, target_len]
        ids = [
            [*torch.randint(3, backbone.config.vocab_size, (n - 1,), generator=g).tolist(), eos]
            for n in lengths
        ]
    width = max(len(x) for x in ids)
    cands = torch.full((len(ids), width), -100, dtype=torch.long)
    for i, row in enumerate(ids):
        cands[i, : len(row)] = torch.tensor(row)
    return cands.unsqueeze(0).expand(batch, -1, -1).contiguous().to(device), width


def bench_eval(backbone, tokenizer, batch, bench: Bench, out: dict) -> None:
    """Part 3: examples/s of greedy generation vs rank scoring of the label-word candidates."""
    bank = make_bank("ssum", backbone, bench.device)
    model = ComptModel(backbone, bank).eval()
    n_batch = batch["input_ids"].shape[0]
    cands, max_new = candidate_labels(tokenizer, backbone, n_batch, batch["labels"].shape[1], bench.device)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "task_ids")}
    generated: list[int] = []

    def generate() -> None:
        with bench.autocast():
            ids = model.generate(**inputs, max_new_tokens=max_new)
        generated.append(ids.shape[1] - 1)

    def rank() -> None:
        with bench.autocast():
            model.score_candidates(**inputs, candidate_labels=cands)

    def encoder() -> None:  # the part both share: prompted input + encoder pass (bounds the ratio)
        with torch.no_grad(), bench.autocast():
            embeds, attention = model.prompted_inputs(**inputs)
            backbone.get_encoder()(inputs_embeds=embeds, attention_mask=attention)

    times = bench.interleaved({"generate": generate, "rank": rank, "encoder_only": encoder})
    out["eval_times_s"] = {name: median(t) for name, t in times.items()}
    out["eval_times_raw_s"] = times
    out["eval_examples_per_s"] = {name: n_batch / t for name, t in out["eval_times_s"].items()}
    r, spread = ratio(times, "generate", "rank")  # time ratio gen/rank = throughput ratio rank/gen
    out["rank_over_generate"], out["rank_over_generate_spread"] = r, spread
    # no scorer that needs the encoder pass can beat generate by more than this
    out["rank_over_generate_bound"] = out["eval_times_s"]["generate"] / out["eval_times_s"]["encoder_only"]
    out["eval_setup"] = {
        "candidates": int(cands.shape[1]),
        "candidate_tokens": int(cands.shape[2]),
        "max_new_tokens": int(max_new),
        "generated_tokens": int(max(generated)),
        "predictor": "ComptModel.generate / ComptModel.score_candidates",
    }


def bench_data(tokenizer, batch_size: int, step_time: float, bench: Bench, out: dict) -> None:
    """Part 4: time per batch from the DataModule's train loader (after caching) relative to the train step."""
    try:
        from compt.data import ComptDataModule, DataConfig
    except ImportError as err:
        out["data_over_step"] = f"skipped: compt.data.ComptDataModule is not importable ({err})"
        return
    if tokenizer is None:
        tokenizer = load_backbone("tiny")[1]
    try:
        from compt.tasks import resolve_tasks

        tasks = resolve_tasks("demo")
    except Exception:
        tasks = list(TASKS)
    dm = ComptDataModule(tasks, tokenizer, DataConfig(source="local", k=16, seed=0, batch_size=batch_size))
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
    out["data_time_per_batch_s"] = median(per_batch)
    out["data_batches_timed"] = len(per_batch)
    out["data_over_step"] = out["data_time_per_batch_s"] / step_time


def bench_memory(backbone, batch, methods, bench: Bench, out: dict) -> None:
    """Part 5: peak memory of a train step, and the checkpoint size on disk."""
    out["peak_mem_bytes"], out["peak_mem_delta_bytes"] = {}, {}
    n_tokens = batch["input_ids"].shape[1]
    steps = {"floor_20": floor_step(backbone, batch, n_tokens + 20, bench)}
    banks = {}
    for method in methods:
        banks[method] = make_bank(method, backbone, bench.device)
        model = ComptModel(backbone, banks[method]).train()
        steps[method] = compt_step(model, make_optimizer(banks[method]), batch, bench)
    for name, step in steps.items():
        mem = peak_memory(step, bench)
        out["peak_mem_bytes"][name] = mem["peak_mem_bytes"]
        out["peak_mem_delta_bytes"][name] = mem["peak_mem_delta_bytes"]
    out["peak_mem_kind"] = (
        "torch.cuda.max_memory_allocated during one step" if bench.cuda else "max RSS delta during one step"
    )
    backbone_bytes = param_bytes(backbone)
    out["backbone_param_bytes"] = backbone_bytes
    out["ckpt_bytes"], out["ckpt_over_backbone"] = {}, {}
    folded_supported = "fold_encoders" in PromptBank.save.__code__.co_varnames
    if folded_supported:
        out["ckpt_folded_bytes"], out["ckpt_folded_over_backbone"] = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for method, bank in banks.items():
            directory = bank.save(Path(tmp) / method)
            out["ckpt_bytes"][method] = dir_bytes(directory)
            out["ckpt_over_backbone"][method] = out["ckpt_bytes"][method] / backbone_bytes
            if folded_supported:
                directory = bank.save(Path(tmp) / f"{method}-folded", fold_encoders=True)
                out["ckpt_folded_bytes"][method] = dir_bytes(directory)
                out["ckpt_folded_over_backbone"][method] = out["ckpt_folded_bytes"][method] / backbone_bytes


# ---------------------------------------------------------------------------------------------- driver
def bench_shape(shape: str, args, bench: Bench) -> dict[str, Any]:
    out: dict[str, Any] = {}
    backbone, tokenizer = build_backbone(shape, bench.device)
    batch_size = args.batch_size or (32 if bench.cuda else 8)
    batch = make_batch(backbone, batch_size, args.input_len, args.target_len, bench.device)
    out["setup"] = {
        "batch": batch_size,
        "input_tokens": args.input_len,
        "target_tokens": args.target_len,
        "tasks": len(TASKS),
        "backbone_params": sum(p.numel() for p in backbone.parameters()),
        "repeats": bench.repeats,
        "warmup": bench.warmup,
    }
    parts = args.parts
    log = lambda msg: print(f"[{shape}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if "train" in parts:
        log("train step vs floor")
        bench_train(backbone, batch, args.methods, bench, out)
    if "peer" in parts:
        log("PEFT peer")
        bench_peer(backbone, batch, bench, out)
    if "eval" in parts:
        log("evaluation")
        bench_eval(backbone, tokenizer, batch, bench, out)
    if "memory" in parts:
        log("memory and checkpoint")
        bench_memory(backbone, batch, args.methods, bench, out)
    if "data" in parts:
        log("data")
        if "train_times_s" in out:
            ref = "ssum" if "ssum" in out["train_times_s"] else args.methods[0]
            step_time = out["train_times_s"][ref]
        else:  # measure the reference step here
            bank = make_bank("ssum", backbone, bench.device)
            step = compt_step(ComptModel(backbone, bank).train(), make_optimizer(bank), batch, bench)
            ref, step_time = "ssum", median(bench.interleaved({"ssum": step})["ssum"])
        out["data_reference_step"] = ref
        try:
            bench_data(tokenizer, batch_size, step_time, bench, out)
        except Exception as err:  # the DataModule is young: record why, keep the other figures
            out["data_over_step"] = f"skipped: {type(err).__name__}: {err}"
    if bench.cuda and "train_times_s" in out:
        out["mfu"] = {
            m: out["train_tflops_per_s"][m] / args.peak_tflops
            for m in args.methods
            if m in out["train_tflops_per_s"]
        }
        out["peak_tflops"] = args.peak_tflops
    del backbone
    release_memory()
    return out


def fmt(value: Any, spec: str = ".3f") -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, spec)
    return "-" if value is None else str(value)


def print_table(result: dict[str, Any], cuda: bool) -> None:
    m = result["machine"]
    print(
        f"\ncompt benchmarks  {m['date']}  {m['cpu']} ({m['cpu_count']} CPUs)  torch {m['torch']}  "
        f"device {m['device']}  dtype {m['dtype']}"
    )
    for shape, r in result["shapes"].items():
        s = r["setup"]
        print(
            f"\n== {shape}: batch {s['batch']}, input {s['input_tokens']} tokens, target {s['target_tokens']}, "
            f"T={s['tasks']} tasks, {s['backbone_params'] / 1e6:.1f}M backbone params, "
            f"median of {s['repeats']}"
        )
        rows = []
        for name, t in r.get("train_times_s", {}).items():
            sof = r["step_over_floor"].get(name)
            spread = r["step_over_floor_spread"].get(name)
            extra = ""
            if cuda and name in r.get("train_examples_per_s", {}):
                extra = f"  {r['train_examples_per_s'][name]:.1f} ex/s  MFU {r['mfu'][name]:.1%}"
            rows.append(
                f"  train {name:<22} {t * 1e3:10.1f} ms"
                + (f"   step/floor {sof:.3f} [{spread[0]:.3f}, {spread[1]:.3f}]" if sof else "")
                + extra
            )
        if "mcat_over_floor_20" in r:
            lo, hi = r["mcat_over_floor_20_spread"]
            rows.append(
                f"  mcat / floor_20 (20-token floor)     {r['mcat_over_floor_20']:.3f} [{lo:.3f}, {hi:.3f}]"
            )
        for name, t in r.get("peer_times_s", {}).items():
            rows.append(f"  peer  {name:<22} {t * 1e3:10.1f} ms")
        if "peer_times_s" in r:
            lo, hi = r["pt_over_peft_spread"]
            rows.append(
                f"  pt_over_peft (raw, before)           {r['pt_over_peft']:.3f} [{lo:.3f}, {hi:.3f}]"
            )
            rows.append(f"  pt (default mlp, after) / peft       {r['pt_mlp_over_peft']:.3f}")
        for name, eps in r.get("eval_examples_per_s", {}).items():
            rows.append(f"  eval  {name:<22} {eps:10.1f} ex/s")
        if "rank_over_generate" in r:
            lo, hi = r["rank_over_generate_spread"]
            rows.append(
                f"  rank_over_generate                   {r['rank_over_generate']:.2f} [{lo:.2f}, {hi:.2f}]"
                f"   (bound generate/encoder_only {r['rank_over_generate_bound']:.2f})"
            )
        if "data_over_step" in r:
            rows.append(
                f"  data_over_step ({r.get('data_reference_step')})  {fmt(r['data_over_step'], '.4f')}"
            )
        for name, b in r.get("peak_mem_bytes", {}).items():
            rows.append(f"  peak mem {name:<19} {b / 2**20:10.1f} MiB")
        for name, b in r.get("ckpt_bytes", {}).items():
            folded = r.get("ckpt_folded_bytes", {}).get(name)
            rows.append(
                f"  ckpt  {name:<22} {b / 2**20:10.2f} MiB  {r['ckpt_over_backbone'][name]:.2%} of backbone"
                + (
                    f"   folded {folded / 2**20:.3f} MiB {r['ckpt_folded_over_backbone'][name]:.3%}"
                    if folded
                    else ""
                )
            )
        print("\n".join(rows))
    print()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench.json"), help="the JSON to write")
    p.add_argument("--quick", action="store_true", help="tiny shape only (CI-sized, < 1 minute)")
    p.add_argument("--shapes", default=None, help=f"comma-separated subset of {','.join(SHAPES)}")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=("fp32", "bf16"),
        help="fp32, or bf16 autocast (CUDA; default there). Never fp16 with T5.",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per configuration (median)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per configuration first")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of pt,ssum,msum,mcat")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--batch-size", type=int, default=None, help="default 8 on CPU, 32 on GPU")
    p.add_argument(
        "--input-len", type=int, default=128, help="encoder input tokens (text, before the prompt)"
    )
    p.add_argument("--target-len", type=int, default=4, help="target tokens")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="peak dense TFLOP/s for MFU (989 = H100/H200 bf16 dense)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    args.parts = [x for x in args.parts.split(",") if x]
    for m in args.methods:
        if m not in METHODS:
            p.error(f"--methods: unknown method {m!r}")
    for x in args.parts:
        if x not in PARTS:
            p.error(f"--parts: unknown part {x!r}")
    args.shapes = ["tiny"] if args.quick else (args.shapes.split(",") if args.shapes else list(SHAPES))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    if dtype == "bf16" and device.type != "cuda":
        print(
            "note: bf16 autocast on CPU is not a configuration we benchmark; using it anyway", file=sys.stderr
        )
    quick_tiny = args.quick or args.shapes == ["tiny"]
    repeats = args.repeats or (5 if quick_tiny else (20 if device.type == "cuda" else 7))
    warmup = args.warmup if args.warmup is not None else (2 if device.type == "cuda" else 1)
    bench = Bench(device, dtype, repeats, warmup)
    torch.manual_seed(0)
    result: dict[str, Any] = {
        "machine": machine_info(device, dtype),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "shapes": {},
    }
    started = time.perf_counter()
    for shape in args.shapes:
        result["shapes"][shape] = bench_shape(shape, args, bench)
    result["wall_s"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result, bench.cuda)
    print(f"wrote {args.out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
