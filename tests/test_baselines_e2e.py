"""The baselines run through the same train.py, data, evaluation and outputs as ComPT (demo scale)."""

from __future__ import annotations

import pytest
import torch

from compt import PromptBank
from tests.helpers import FAST, read_results, run_script

pytestmark = pytest.mark.slow

SHORT = [*FAST, "trainer.max_steps=3"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """mpt, attempt and ssum at demo scale, one job each of one sweep (ssum's: the donor of
    test_sources_init_from_and_freeze)."""
    folder = tmp_path_factory.mktemp("baselines")
    run_script("train.py", "-m", *SHORT, "method=mpt,attempt,ssum", f"hydra.sweep.dir={folder}")
    return folder


def _job(sweep, method: str):
    [job] = [p.parent for p in sweep.glob(f"*method={method},*/results.json")]
    return job


@pytest.mark.parametrize("method", ["mpt", "attempt"])
def test_baseline_trains_at_demo_scale(sweep, method):
    run_dir = _job(sweep, method)
    results = read_results(run_dir)
    assert results["method"] == method and results["global_step"] == 3
    assert results["counts"] == {"sst2": 8, "rte": 8, "mnli": 8, "stsb": 8}
    bank = PromptBank.load(run_dir / "bank")
    assert bank.config.method == method and bank.config.encoder == "none"


def test_mpt_options_given_to_another_method_fail_clearly(tmp_path):
    proc = run_script(
        "train.py", *SHORT, "method=mcat", "method.mpt_rank=4", f"hydra.run.dir={tmp_path}", check=False
    )
    assert proc.returncode != 0 and "mpt_rank" in proc.stderr


def test_spot_runs_both_stages_and_transfers_the_shared_prompt(tmp_path):
    run_dir = tmp_path / "spot"
    run_script(
        "train.py",
        *SHORT,
        "method=spot",
        "method.stage1_epochs=1",
        "method.source_tasks=[sst2,mnli]",
        f"hydra.run.dir={run_dir}",
    )
    stage1, stage2 = read_results(run_dir / "stage1"), read_results(run_dir)
    assert stage1["tasks"] == ["sst2", "mnli"] and stage2["tasks"] == ["sst2", "rte", "mnli", "stsb"]
    assert stage2["method"] == "spot"
    shared = PromptBank.load(run_dir / "stage1" / "bank")
    assert shared.config.method == "sources_only" and shared.config.n_sources == 1
    assert PromptBank.load(run_dir / "bank").config.method == "pt"


def test_sources_init_from_and_freeze(sweep, tmp_path):
    donor = _job(sweep, "ssum")
    run_dir = tmp_path / "attempt"
    run_script(
        "train.py",
        *SHORT,
        "method=attempt",
        "method.encoder=mlp",
        f"sources.init_from='{donor}'",  # quoted: a sweep job's folder name holds = and ,
        "sources.freeze=true",
        f"hydra.run.dir={run_dir}",
    )
    donor_sources = PromptBank.load(donor / "bank").sources.state_dict()
    trained = PromptBank.load(run_dir / "bank").sources.state_dict()
    assert all(torch.equal(donor_sources[k], trained[k]) for k in donor_sources)  # loaded, then kept frozen
