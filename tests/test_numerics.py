"""``portable_cpu=true`` (the demos): the same bits on machines of another vector width and core count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from compt.errors import ConfigError
from compt.runtime.numerics import use_portable_cpu
from tests.helpers import REPO_ROOT

#: this machine, one thread
HERE = {"OMP_NUM_THREADS": "1"}
#: a machine without AVX-512 and with two cores, as torch, MKL and oneDNN see it
THERE = {
    "OMP_NUM_THREADS": "2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def probe(mode: str, machine: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in THERE} | machine
    proc = subprocess.run(
        [sys.executable, "tests/numerics_probe.py", mode],
        cwd=REPO_ROOT,
        env=env | {"PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_portable_arithmetic_is_bit_identical_on_another_vector_width_and_core_count():
    assert probe("portable", HERE) == probe("portable", THERE)
    if torch.backends.cpu.get_cpu_capability() == "AVX512":  # the control needs a machine with AVX-512
        assert probe("plain", HERE) != probe("plain", THERE)


def test_portable_arithmetic_is_refused_in_a_process_that_already_computed():
    torch.ones(3).sum()  # torch has fixed its kernels in this process
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this machine's torch runs its default kernels anyway")
    before = dict(os.environ)
    with pytest.raises(ConfigError, match="portable_cpu=true cannot take effect: this process already runs"):
        use_portable_cpu()
    assert dict(os.environ) == before and torch.get_num_threads() >= 1
