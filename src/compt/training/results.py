"""A run's outputs: ``results.json`` (written atomically), ``predictions.jsonl`` and the summary table."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"
BANK_DIR = "bank"
FORMAT_VERSION = 1


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(_finite(data), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN: write ``null`` instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def is_complete(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a finished run's ``results.json``."""
    path = Path(run_dir) / RESULTS_FILE
    try:
        return json.loads(path.read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


def load_results(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / RESULTS_FILE).read_text())


def write_predictions(path: str | Path, rows: list[dict[str, Any]], inputs: dict[str, list[dict]]) -> Path:
    """One JSON line per evaluated example, sorted by task and example id, with its input and target text."""
    path = Path(path)
    rows = sorted(rows, key=lambda r: (r["task"], r["example_id"]))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        for row in rows:
            source = inputs.get(row["task"], [])
            extra = source[row["example_id"]] if row["example_id"] < len(source) else {}
            record = {
                **row,
                "input": extra.get("input_text"),
                "target": extra.get("target_text"),
            }
            handle.write(json.dumps(_finite(record)) + "\n")
    os.replace(tmp, path)
    return path


def summary_table(results: dict[str, Any]) -> str:
    """A one-screen Markdown summary: per-task metrics, the primary metric and the paper's reading (accuracy;
    stsb spearman), invalid counts, and both averages."""
    metrics, counts, invalid = results["metrics"], results["counts"], results["invalid"]
    paper = results.get("primary_paper", {})
    lines = [
        f"method={results['method']} k={results['k']} seed={results['seed']} "
        f"eval={results['eval_mode']} steps={results['global_step']}",
        "",
        "| task | metrics | primary | paper reading | n | invalid |",
        "|---|---|---|---|---|---|",
    ]
    for task, values in metrics.items():
        shown = ", ".join(f"{k} {v:.1f}" for k, v in values.items())
        lines.append(
            f"| {task} | {shown} | {results['primary'][task]:.1f} | {paper.get(task, float('nan')):.1f} "
            f"| {counts[task]} | {invalid[task]} |"
        )
    lines.append(
        f"| **avg** | | **{results['avg']:.1f}** | **{results.get('avg_paper', float('nan')):.1f}** | | |"
    )
    return "\n".join(lines)
