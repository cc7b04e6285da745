"""``compt evaluate``, ``compt predict`` and ``compt export``: argument wiring only (the library:
:mod:`compt.inference`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compt.evaluation.config import EVAL_MODES as MODES

PREDICT_HELP = "predict rows of a task with a trained run's prompts"
PREDICT_DESCRIPTION = (
    "Format each input row with the task's template and predict it with the run's prompt bank on its "
    "backbone. Prints JSON lines (or writes them with --output)."
)
EXPORT_HELP = (
    "export composed prompts (a PEFT prompt-tuning adapter, or prompt embeddings for servers), or a LoRA/prefix "
    "run's adapter"
)
EXPORT_DESCRIPTION = (
    "Compose a task's target prompt (evaluation-mode router weights, mask applied) and write it as a "
    "Hugging Face PEFT prompt-tuning adapter (--format peft: loads with PeftModel.from_pretrained), or every "
    "task's prompt under every mask asked as one safetensors file of (L, d) tensors named TASK/MASK "
    "(--format embeds: for servers that take prompt embeddings per request). A method=lora or method=prefix "
    "run's adapter (shared by its tasks) is written as PEFT saved it (--format peft)."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``compt evaluate``, ``compt predict`` and ``compt export``."""
    _add_evaluate(subparsers)
    _add_predict(_bank_command(subparsers, "predict", PREDICT_HELP, PREDICT_DESCRIPTION))
    _add_export(_bank_command(subparsers, "export", EXPORT_HELP, EXPORT_DESCRIPTION))


def _bank_command(
    subparsers: argparse._SubParsersAction, name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    """A sub-command that reads a trained bank (``--bank``)."""
    parser = subparsers.add_parser(name, help=summary, description=description)
    parser.add_argument(
        "--bank", required=True, type=Path, metavar="RUN_DIR", help="run folder or bank folder"
    )
    return parser


def _add_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        default=None,
        help="answer every row as this task (default: each row's own 'task' column; rows of different "
        "tasks share batches)",
    )
    parser.add_argument("--input", required=True, type=Path, help="rows: .jsonl, .json, .csv or .parquet")
    parser.add_argument("--output", type=Path, default=None, help="write JSON lines here (default: stdout)")
    parser.add_argument("--mode", choices=MODES, default=None, help="default: the run's eval.mode, else rank")
    parser.add_argument("--mask", default="total", help="evaluation mask: total, private, all_src, src{i}")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backbone", default=None, help="override the backbone recorded in the bank")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.set_defaults(func=predict)


def predict(args: argparse.Namespace) -> int:
    from compt.inference.predictor import predict_file

    count, valid = predict_file(
        args.bank,
        args.task,
        args.input,
        args.output,
        mode=args.mode,
        mask=args.mask,
        batch_size=args.batch_size,
        backbone=args.backbone,
        device=args.device,
    )
    if args.output:
        print(f"wrote {count} predictions ({valid} valid) to {args.output}", file=sys.stderr)
    return 0


def _add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task", default=None, help="the task to export (peft: required; embeds: default every task)"
    )
    parser.add_argument("--format", choices=("peft", "embeds"), default="peft")
    parser.add_argument(
        "--out", required=True, type=Path, help="peft: adapter folder to write; embeds: FILE.safetensors"
    )
    parser.add_argument(
        "--mask",
        default="total",
        help="total, private, all_src, src{i}; embeds: several, comma-separated, or all",
    )
    parser.add_argument(
        "--allow-position-change",
        action="store_true",
        help="export a bank trained with position=after anyway (PEFT puts prompts before the text)",
    )
    parser.set_defaults(func=export)


def export(args: argparse.Namespace) -> int:
    from compt.errors import ExportError
    from compt.inference.export import export_embeds, export_peft

    if args.format == "embeds":
        tasks = None if args.task is None else [args.task]
        out, written = export_embeds(args.bank, args.out, tasks, args.mask.split(","))
        print(f"wrote {len(written)} prompts ({', '.join(written)}) to {out}", file=sys.stderr)
        return 0
    if args.task is None:
        raise ExportError("--format peft exports one task's prompt: pass --task NAME")
    out = export_peft(args.bank, args.task, args.out, args.mask, args.allow_position_change)
    print(
        f"wrote a PEFT adapter for {args.task!r} to {out} (what it holds: {out}/README.md)", file=sys.stderr
    )
    return 0


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
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
    from compt.inference.mask_table import write_tables
    from compt.inference.rerun import evaluate_run

    masks = [m.strip() for m in args.masks.split(",")] if args.masks else None
    by_mask = evaluate_run(
        args.run_dir, masks, args.checkpoint, args.mode, args.max_samples, args.accelerator
    )
    out_dir = Path(args.out) if args.out else RunDir(args.run_dir).eval_dir
    print(write_tables(by_mask, out_dir))
    print(f"\nwrote {out_dir}/masks.{{md,csv,json}}")
    return 0
