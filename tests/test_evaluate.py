"""compt evaluate: a trained run re-evaluated under the ablation masks."""

from __future__ import annotations

import csv
import json

import pytest

from compt.cli import main as compt_main
from tests.helpers import FAST, read_results, run_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mcat_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mcat") / "run"
    run_script("train.py", *FAST, "method=mcat", "eval.masks=[total,src0]", f"hydra.run.dir={run_dir}")
    return run_dir


def test_evaluate_reproduces_the_run_and_writes_a_task_by_mask_table(mcat_run, capsys):
    assert compt_main(["evaluate", str(mcat_run), "--masks", "all", "--accelerator", "cpu"]) == 0
    out_dir = mcat_run / "eval"
    by_mask = json.loads((out_dir / "masks.json").read_text())
    assert list(by_mask) == ["src0", "src1", "src2", "all_src", "private", "total"]
    results = read_results(mcat_run)
    assert by_mask["total"]["primary"] == pytest.approx(results["primary"])  # the same bank, the same data
    assert by_mask["src0"]["avg"] == pytest.approx(results["masks"]["src0"]["avg"])
    rows = list(csv.reader((out_dir / "masks.csv").open()))
    assert rows[0] == ["task", "src0", "src1", "src2", "all_src", "private", "total"]
    assert [r[0] for r in rows[1:]] == ["sst2", "rte", "mnli", "stsb", "avg"]
    assert "| avg |" in capsys.readouterr().out


def test_evaluate_from_the_checkpoint_matches_the_bank(mcat_run):
    from compt.inference.rerun import evaluate_run

    from_checkpoint = evaluate_run(
        mcat_run, ["total"], checkpoint=mcat_run / "checkpoints" / "last.ckpt", accelerator="cpu"
    )
    assert from_checkpoint["total"]["primary"] == pytest.approx(read_results(mcat_run)["primary"])


def test_evaluate_rejects_a_folder_that_is_not_a_run(tmp_path):
    from compt.runs import RunDir

    with pytest.raises(FileNotFoundError, match="not a compt run folder"):
        RunDir(tmp_path).config()


def test_lightning_test_from_a_backbone_free_checkpoint(mcat_run):
    """trainer.test(ckpt_path=...) restores the bank from a checkpoint that holds no backbone weights."""
    import pytorch_lightning as pl

    from compt.config.run_config import RunConfig
    from compt.runs import RunDir
    from compt.training.build import build_module
    from compt.training.datamodule import ComptDataModule

    config = RunConfig.from_hydra(RunDir(mcat_run).config())
    module = build_module(config)  # a fresh, untrained bank
    datamodule = ComptDataModule(config.tasks, module.tokenizer, config.data)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(
        module, datamodule=datamodule, ckpt_path=str(mcat_run / "checkpoints" / "last.ckpt"), verbose=False
    )
    assert module.last_eval["by_mask"]["total"]["primary"] == pytest.approx(read_results(mcat_run)["primary"])
