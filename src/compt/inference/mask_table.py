"""``compt evaluate``'s output: a task × mask table of primary metrics as JSON, CSV and Markdown."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from compt.atomic import atomic_file, write_text_atomic
from compt.runs import write_json_atomic


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
    with atomic_file(out_dir / "masks.csv", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    markdown = "\n".join(lines)
    write_text_atomic(out_dir / "masks.md", markdown + "\n")
    return markdown
