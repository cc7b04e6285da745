"""What ``compt predict`` costs as a command: seconds to the first prediction, seconds in all and peak memory,
for input files of growing size (a script that prints figures, not a test).

    python benchmarks/predict.py                           # 20, 2000 and 20000 rows, the bundled tiny T5
    python benchmarks/predict.py --rows 20 --repeats 5 --out predict.json

Each measurement runs ``compt predict`` in a fresh process, as a user would: the bank is a fresh one for the
tiny T5 (rte, rank classification), the rows are the demo's rte validation rows repeated. ``first_row_s`` is
the time until the first JSON line reaches stdout; ``total_s`` the whole command writing ``--output``;
``cpu_s`` its CPU time (user + system: steadier than wall time on a shared machine); ``peak_rss_mb`` its
peak resident memory (``wait4``). Figures are medians over ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the command measured (plus the bank and the input file)
PREDICT = ["predict", "--task", "rte", "--device", "cpu"]


def make_inputs(folder: Path, counts: list[int]) -> tuple[Path, dict[int, Path]]:
    """A tiny-T5 bank (rte, sst2; the prompt before the text) and one rte input file per row count."""
    import torch

    from compt import PromptBank, PromptBankConfig
    from compt.data import bundled_demo_dir

    config = PromptBankConfig(method="ssum", task_names=["rte", "sst2"], d_model=64, backbone="tiny")
    bank = PromptBank(config, generator=torch.Generator().manual_seed(0)).save(folder / "bank")
    rows = (bundled_demo_dir() / "rte" / "validation.jsonl").read_text().splitlines()
    inputs = {}
    for count in counts:
        path = folder / f"rows{count}.jsonl"
        path.write_text("".join(rows[i % len(rows)] + "\n" for i in range(count)))
        inputs[count] = path
    return bank, inputs


def run(argv: list[str]) -> tuple[float, float, float, float]:
    """``(first_row_s, total_s, cpu_s, peak_rss_mb)`` of one ``compt predict`` process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "compt.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    first = None
    assert proc.stdout is not None
    for _ in proc.stdout:
        if first is None:
            first = time.perf_counter() - started
    _, status, usage = os.wait4(proc.pid, 0)
    total = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"compt {' '.join(argv)} failed (status {status})")
    cpu = usage.ru_utime + usage.ru_stime
    return first if first is not None else total, total, cpu, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="20,2000,20000", help="input sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    counts = [int(c) for c in args.rows.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        bank, inputs = make_inputs(Path(tmp), counts)
        for count in counts:
            base = [*PREDICT, "--bank", str(bank), "--input", str(inputs[count])]
            firsts, totals, cpus, peaks = [], [], [], []
            for _ in range(args.repeats):
                firsts.append(run(base)[0])
                _, total, cpu, peak = run([*base, "--output", str(Path(tmp) / "out.jsonl")])
                totals.append(total)
                cpus.append(cpu)
                peaks.append(peak)
            results.append(
                {
                    "rows": count,
                    "first_row_s": statistics.median(firsts),
                    "total_s": statistics.median(totals),
                    "cpu_s": statistics.median(cpus),
                    "peak_rss_mb": statistics.median(peaks),
                }
            )
            print(
                f"{count:>7} rows: first row {results[-1]['first_row_s']:6.2f} s, all {results[-1]['total_s']:7.2f} s "
                f"({results[-1]['cpu_s']:7.2f} CPU s), peak RSS {results[-1]['peak_rss_mb']:6.0f} MB",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps({"predict": results, "cpus": os.cpu_count()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
