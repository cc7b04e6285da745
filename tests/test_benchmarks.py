"""The benchmark harness runs end to end and writes every figure (no timing assertions)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

REQUIRED = (
    "step_over_floor",
    "pt_over_peft",
    "rank_over_generate",
    "data_over_step",
    "peak_mem_bytes",
    "ckpt_bytes",
    "ckpt_over_backbone",
    "train_times_s",
    "peer_times_s",
    "eval_times_s",
    "adapter_over_peft",
    "adapter_over_floor",
)
METHODS = ("pt", "ssum", "msum", "mcat")


def _numbers(value):
    """Every number inside ``value`` (a number or a nested dict of numbers)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    else:
        yield value


@pytest.mark.slow
def test_quick_benchmark_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("platform", "cpu_count", "torch", "device", "dtype"):
        assert result["machine"][key], key
    assert set(result["shapes"]) == {"tiny", "tiny-causal"}  # one committed model per backbone family
    for tiny in result["shapes"].values():
        for key in REQUIRED:
            assert key in tiny, key
            for number in _numbers(tiny[key]):
                assert isinstance(number, int | float) and not isinstance(number, bool), (key, number)
                assert math.isfinite(number) and number > 0, (key, number)
        assert set(tiny["step_over_floor"]) == set(METHODS)
        assert set(METHODS) <= set(tiny["ckpt_bytes"])
        assert set(tiny["adapter_over_peft"]) == {"lora", "prefix"}
    assert "compt" in proc.stdout and "tiny-causal" in proc.stdout  # the printed table
