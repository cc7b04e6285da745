"""``compt evaluate RUN_DIR``: argument wiring only (the library: :mod:`compt.evaluation.rerun`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compt.evaluation.config import EVAL_MODES as MODES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``compt evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="re-evaluate a trained run, optionally under source/private masks",
        description="Evaluate a run folder's final prompt bank (or --checkpoint) on its tasks' evaluation "
        "sets, under each mask: total, private, all_src, src0, src1, ... (docs/method.md §3). "
        "Writes a task × mask table to RUN_DIR/eval/ (or --out).",
    )
    parser.add_argument("run_dir", help="a run folder written by train.py")
    parser.add_argument(
        "--masks", help="comma list, e.g. total,private,all_src,src0,src1,src2; 'all' = every mask"
    )
    parser.add_argument("--checkpoint", help="a Lightning checkpoint (e.g. RUN_DIR/checkpoints/last.ckpt)")
    parser.add_argument("--mode", choices=MODES, help="prediction mode (default: the run's)")
    parser.add_argument("--max-samples", type=int, help="evaluation examples per task (-1 = all)")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    parser.add_argument("--out", help="output folder (default RUN_DIR/eval)")
    parser.set_defaults(func=evaluate)


def evaluate(args: argparse.Namespace) -> int:
    from compt.runs import RunDir

    RunDir(args.run_dir).config()  # a folder that is no run fails now, not after Lightning has loaded
    from compt.evaluation.mask_table import write_tables
    from compt.evaluation.rerun import evaluate_run

    masks = [m.strip() for m in args.masks.split(",")] if args.masks else None
    by_mask = evaluate_run(
        args.run_dir, masks, args.checkpoint, args.mode, args.max_samples, args.accelerator
    )
    out_dir = Path(args.out) if args.out else RunDir(args.run_dir).eval_dir
    print(write_tables(by_mask, out_dir))
    print(f"\nwrote {out_dir}/masks.{{md,csv,json}}")
    return 0
