"""``compt evaluate RUN_DIR``: re-evaluate a trained run (its bank or a checkpoint), optionally under the
ablation masks of the source-masking analysis (paper Figs. 3/4/6), writing a task × mask table."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from compt.prompts import PromptBank, mask_names
from compt.training.results import BANK_DIR, RESULTS_FILE, write_json_atomic


def run_config(run_dir: Path) -> DictConfig:
    """The resolved config of a run: from results.json, else Hydra's .hydra/config.yaml."""
    results = run_dir / RESULTS_FILE
    if results.is_file():
        return OmegaConf.create(json.loads(results.read_text())["config"])
    hydra_config = run_dir / ".hydra" / "config.yaml"
    if hydra_config.is_file():
        return OmegaConf.load(hydra_config)
    raise FileNotFoundError(
        f"{run_dir} is not a compt run folder (no {RESULTS_FILE} and no .hydra/config.yaml)"
    )


def evaluate_run(
    run_dir: str | Path,
    masks: list[str] | None = None,
    checkpoint: str | Path | None = None,
    mode: str | None = None,
    max_samples: int | None = None,
    accelerator: str = "auto",
) -> dict[str, Any]:
    """Evaluate the run's final bank (or ``checkpoint``) under each mask; returns ``{mask: metrics}``."""
    import pytorch_lightning as pl

    from compt.data import ComptDataModule
    from compt.tasks import run_tasks
    from compt.training.run import build_module, data_config

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if masks == ["all"]:
        masks = ["total"] if cfg.method.name == "pt" else mask_names(cfg.n_sources)
    overrides = {"eval.masks": masks or list(cfg.eval.masks)}
    if mode:
        overrides["eval.mode"] = mode
    if max_samples is not None:
        overrides["eval.max_samples"] = max_samples
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    tasks = run_tasks(OmegaConf.to_container(cfg, resolve=True))
    module = build_module(cfg, tasks, initialise=False)
    load_trained_bank(module.model.bank, run_dir, checkpoint)
    datamodule = ComptDataModule(tasks, module.tokenizer, data_config(cfg))
    trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_model_summary=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return module.last_eval["by_mask"]


def load_trained_bank(bank: PromptBank, run_dir: Path, checkpoint: str | Path | None) -> None:
    """Copy trained weights into ``bank``: from a Lightning checkpoint, or the run's saved ``bank/``."""
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        prefix = "model.bank."
        bank.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        return
    saved = PromptBank.load(run_dir / BANK_DIR, d_model=bank.config.d_model)
    if saved.config.encoder != bank.config.encoder:
        raise ValueError(
            f"{run_dir / BANK_DIR} holds a folded bank (encoder=none); evaluate it from a checkpoint"
        )
    bank.load_state_dict(saved.state_dict())


def mask_table(by_mask: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows task × columns mask of primary metrics (percent), plus an avg row."""
    masks = list(by_mask)
    tasks = list(next(iter(by_mask.values()))["primary"])
    header = ["task", *masks]
    rows = [
        [task, *(f"{by_mask[m]['primary'].get(task, float('nan')):.1f}" for m in masks)] for task in tasks
    ]
    rows.append(["avg", *(f"{by_mask[m]['avg']:.1f}" for m in masks)])
    return header, rows


def write_tables(by_mask: dict[str, Any], out_dir: Path) -> str:
    """Write masks.json, masks.csv and masks.md into ``out_dir``; return the Markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "masks.json", by_mask)
    header, rows = mask_table(by_mask)
    with (out_dir / "masks.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    markdown = "\n".join(lines)
    (out_dir / "masks.md").write_text(markdown + "\n")
    return markdown


def _command(args: argparse.Namespace) -> int:
    masks = [m.strip() for m in args.masks.split(",")] if args.masks else None
    by_mask = evaluate_run(
        args.run_dir, masks, args.checkpoint, args.mode, args.max_samples, args.accelerator
    )
    out_dir = Path(args.out) if args.out else Path(args.run_dir) / "eval"
    print(write_tables(by_mask, out_dir))
    print(f"\nwrote {out_dir}/masks.{{md,csv,json}}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="re-evaluate a trained run, optionally under source/private masks",
        description="Evaluate a run folder's final prompt bank (or --checkpoint) on its tasks' evaluation "
        "sets, under each mask: total, private, all_src, src0, src1, ... (METHOD.md §3). "
        "Writes a task × mask table to RUN_DIR/eval/ (or --out).",
    )
    parser.add_argument("run_dir", help="a run folder written by train.py")
    parser.add_argument(
        "--masks", help="comma list, e.g. total,private,all_src,src0,src1,src2; 'all' = every mask"
    )
    parser.add_argument("--checkpoint", help="a Lightning checkpoint (e.g. RUN_DIR/checkpoints/last.ckpt)")
    parser.add_argument("--mode", choices=["generate", "rank"], help="prediction mode (default: the run's)")
    parser.add_argument("--max-samples", type=int, help="evaluation examples per task (-1 = all)")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    parser.add_argument("--out", help="output folder (default RUN_DIR/eval)")
    parser.set_defaults(func=_command)
