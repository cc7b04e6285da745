#!/usr/bin/env python
"""compt benchmark harness: train-step overhead, PEFT peer, evaluation, data, memory and the PEFT adapter methods
against plain PEFT (benchmarks/README.md).

A script, not a timed test. Writes one JSON (``--out``) and prints a table. Every figure is the median of
``--repeats`` runs after warm-up; configurations that are compared are timed interleaved, round by round, so
that slow drifts of the machine hit both sides of a ratio alike. ``*_spread`` entries give the min and max of
the per-round paired ratios.

    python benchmarks/run.py --out bench.json            # tiny + t5-base shapes (make bench)
    python benchmarks/run.py --quick --out bench.json    # the tiny models only, CI-sized (< 1 minute)

This file holds the command line, the table and the JSON; :mod:`harness` times, :mod:`backbones` builds the
shapes, :mod:`measures` measures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in OFFLINE.items():  # before transformers and datasets are imported
    os.environ.setdefault(_key, _value)

import torch  # noqa: E402

from adapters import AdapterFigures, measure_adapters  # noqa: E402
from backbones import SHAPES  # noqa: E402
from harness import Bench, machine_info, median, release_memory  # noqa: E402
from measures import (  # noqa: E402
    TASKS,
    DataFigures,
    EvalFigures,
    MemoryFigures,
    PeerFigures,
    TrainFigures,
    measure_data,
    measure_eval,
    measure_memory,
    measure_peer,
    measure_train,
    method_step,
)

warnings.filterwarnings("ignore")

METHODS = ("pt", "ssum", "msum", "mcat")
#: the committed tiny models, one per backbone family (``--quick``)
QUICK_SHAPES = ("tiny", "tiny-causal")
PARTS = ("train", "peer", "eval", "data", "memory", "adapters")
#: the method whose train step the data part is compared with (when measured)
DATA_REFERENCE = "ssum"


@dataclass
class ShapeResult:
    """Everything measured on one shape; :meth:`to_json` gives the documented JSON keys."""

    setup: dict[str, Any]
    train: TrainFigures | None = None
    peer: PeerFigures | None = None
    eval: EvalFigures | None = None
    memory: MemoryFigures | None = None
    data: DataFigures | None = None
    adapters: AdapterFigures | None = None
    #: JSON key -> why its part was not measured
    skipped: dict[str, str] = field(default_factory=dict)
    mfu: dict[str, float] | None = None
    peak_tflops: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"setup": self.setup}
        for part in (self.train, self.peer, self.eval, self.memory, self.data, self.adapters):
            if part is not None:
                out.update({k: v for k, v in asdict(part).items() if v is not None})
        out.update({key: f"skipped: {reason}" for key, reason in self.skipped.items()})
        if self.mfu is not None:
            out.update(mfu=self.mfu, peak_tflops=self.peak_tflops)
        return out


def bench_shape(name: str, args: argparse.Namespace, bench: Bench) -> ShapeResult:
    shape = SHAPES[name](bench.device)
    batch_size = args.batch_size or (32 if bench.cuda else 8)
    batch = shape.make_batch(batch_size, args.input_len, args.target_len, len(TASKS), bench.device)
    result = ShapeResult(
        setup={
            "batch": batch_size,
            "input_tokens": args.input_len,
            "target_tokens": args.target_len,
            "tasks": len(TASKS),
            "backbone_params": sum(p.numel() for p in shape.backbone.parameters()),
            "repeats": bench.repeats,
            "warmup": bench.warmup,
        }
    )

    def log(message: str) -> None:
        print(f"[{name}] {message}", file=sys.stderr, flush=True)

    if "train" in args.parts:
        log("train step vs floor")
        result.train = measure_train(shape, batch, args.methods, bench)
    if "peer" in args.parts:
        log("PEFT peer")
        result.peer = with_peft(result, "pt_over_peft", partial(measure_peer, shape, batch, bench))
    if "eval" in args.parts:
        log("evaluation")
        result.eval = measure_eval(shape, batch, bench)
    if "memory" in args.parts:
        log("memory and checkpoint")
        result.memory = measure_memory(shape, batch, args.methods, bench)
    if "data" in args.parts:
        log("data")
        reference, step_time = reference_step(result.train, shape, batch, bench, args.methods)
        result.data = measure_data(shape.tokenizer, batch_size, reference, step_time, bench)
    if "adapters" in args.parts:
        log("PEFT adapters (lora, prefix) vs plain PEFT")
        result.adapters = with_peft(
            result, "adapter_over_peft", partial(measure_adapters, shape, batch, bench)
        )
    if bench.cuda and result.train is not None:
        result.mfu = {m: t / args.peak_tflops for m, t in result.train.train_tflops_per_s.items()}
        result.peak_tflops = args.peak_tflops
    del shape
    release_memory()
    return result


def with_peft(result: ShapeResult, key: str, measure: Any) -> Any:
    """``measure()``, or None with ``key`` marked skipped when peft is not installed."""
    if importlib.util.find_spec("peft") is None:
        result.skipped[key] = "peft not installed"
        return None
    return measure()


def reference_step(
    train: TrainFigures | None, shape, batch, bench: Bench, methods: list[str]
) -> tuple[str, float]:
    """The train step the data part is compared with: ``ssum``'s (else the first method's) when the train
    part ran, else ``ssum``'s measured here."""
    if train is not None:
        reference = DATA_REFERENCE if DATA_REFERENCE in train.train_times_s else methods[0]
        return reference, train.train_times_s[reference]
    step, _ = method_step(DATA_REFERENCE, shape, batch, bench)
    return DATA_REFERENCE, median(bench.interleaved({DATA_REFERENCE: step})[DATA_REFERENCE])


# ---------------------------------------------------------------------------------------------- table
def table_rows(r: ShapeResult, cuda: bool) -> list[str]:
    """The printed lines of one shape."""
    rows = []
    if (t := r.train) is not None:
        for name, seconds in t.train_times_s.items():
            line = f"  train {name:<22} {seconds * 1e3:10.1f} ms"
            if name in t.step_over_floor:
                lo, hi = t.step_over_floor_spread[name]
                line += f"   step/floor {t.step_over_floor[name]:.3f} [{lo:.3f}, {hi:.3f}]"
                if cuda and r.mfu:
                    line += f"  {t.train_examples_per_s[name]:.1f} ex/s  MFU {r.mfu[name]:.1%}"
            rows.append(line)
        if t.mcat_over_floor_20 is not None:
            lo, hi = t.mcat_over_floor_20_spread or (0.0, 0.0)
            rows.append(
                f"  mcat / floor_20 (20-token floor)     {t.mcat_over_floor_20:.3f} [{lo:.3f}, {hi:.3f}]"
            )
    if (p := r.peer) is not None:
        rows += [f"  peer  {name:<22} {seconds * 1e3:10.1f} ms" for name, seconds in p.peer_times_s.items()]
        lo, hi = p.pt_over_peft_spread
        rows.append(f"  pt_over_peft (raw, before)           {p.pt_over_peft:.3f} [{lo:.3f}, {hi:.3f}]")
        rows.append(f"  pt (default mlp, after) / peft       {p.pt_mlp_over_peft:.3f}")
    if (e := r.eval) is not None:
        rows += [f"  eval  {name:<22} {eps:10.1f} ex/s" for name, eps in e.eval_examples_per_s.items()]
        lo, hi = e.rank_over_generate_spread
        rows.append(
            f"  rank_over_generate                   {e.rank_over_generate:.2f} [{lo:.2f}, {hi:.2f}]"
            f"   (bound generate/encoder_only {e.rank_over_generate_bound:.2f})"
        )
    if (d := r.data) is not None:
        rows.append(f"  data_over_step ({d.data_reference_step})  {d.data_over_step:.4f}")
    if (m := r.memory) is not None:
        rows += [f"  peak mem {name:<19} {b / 2**20:10.1f} MiB" for name, b in m.peak_mem_bytes.items()]
        for name, b in m.ckpt_bytes.items():
            folded = m.ckpt_folded_bytes[name]
            rows.append(
                f"  ckpt  {name:<22} {b / 2**20:10.2f} MiB  {m.ckpt_over_backbone[name]:.2%} of backbone"
                f"   folded {folded / 2**20:.3f} MiB {m.ckpt_folded_over_backbone[name]:.3%}"
            )
    if (a := r.adapters) is not None:
        rows += [f"  adapt {name:<22} {t * 1e3:10.1f} ms" for name, t in a.adapter_times_s.items()]
        for method, value in a.adapter_over_peft.items():
            lo, hi = a.adapter_over_peft_spread[method]
            rows.append(
                f"  {method}_over_peft {'':<17} {value:.3f} [{lo:.3f}, {hi:.3f}]   "
                f"/ floor_0 {a.adapter_over_floor[method]:.3f}   {a.adapter_trainable_params[method]} params"
            )
    rows += [f"  {key}: skipped ({reason})" for key, reason in r.skipped.items()]
    return rows


def print_table(machine: dict[str, Any], shapes: dict[str, ShapeResult], cuda: bool) -> None:
    print(
        f"\ncompt benchmarks  {machine['date']}  {machine['cpu']} ({machine['cpu_count']} CPUs)  "
        f"torch {machine['torch']}  device {machine['device']}  dtype {machine['dtype']}  clock {machine['clock']}"
    )
    for name, r in shapes.items():
        s = r.setup
        print(
            f"\n== {name}: batch {s['batch']}, input {s['input_tokens']} tokens, target {s['target_tokens']}, "
            f"T={s['tasks']} tasks, {s['backbone_params'] / 1e6:.1f}M backbone params, "
            f"median of {s['repeats']}"
        )
        print("\n".join(table_rows(r, cuda)))
    print()


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench.json"), help="the JSON to write")
    p.add_argument(
        "--quick", action="store_true", help=f"the tiny shapes only ({', '.join(QUICK_SHAPES)}; CI-sized)"
    )
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
    p.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "cpu"),
        help="wall: elapsed time; cpu: the process's CPU time (a CPU shared with other jobs; use --threads 1)",
    )
    args = p.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    args.parts = [x for x in args.parts.split(",") if x]
    for m in args.methods:
        if m not in METHODS:
            p.error(f"--methods: unknown method {m!r}")
    for x in args.parts:
        if x not in PARTS:
            p.error(f"--parts: unknown part {x!r}")
    args.shapes = (
        list(QUICK_SHAPES) if args.quick else (args.shapes.split(",") if args.shapes else list(SHAPES))
    )
    for s in args.shapes:
        if s not in SHAPES:
            p.error(f"--shapes: unknown shape {s!r}; choose from {', '.join(SHAPES)}")
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
    quick_tiny = args.quick or set(args.shapes) <= set(QUICK_SHAPES)
    repeats = args.repeats or (5 if quick_tiny else (20 if device.type == "cuda" else 7))
    warmup = args.warmup if args.warmup is not None else (2 if device.type == "cuda" else 1)
    if args.clock == "cpu" and device.type == "cuda":
        print(
            "note: --clock cpu times the host only; GPU work is not counted, use --clock wall",
            file=sys.stderr,
        )
    bench = Bench(device, dtype, repeats, warmup, args.clock)
    torch.manual_seed(0)
    machine = {**machine_info(device, dtype), "clock": args.clock}
    started = time.perf_counter()
    shapes = {name: bench_shape(name, args, bench) for name in args.shapes}
    result = {
        "machine": machine,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "shapes": {name: r.to_json() for name, r in shapes.items()},
        "wall_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(machine, shapes, bench.cuda)
    print(f"wrote {args.out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
