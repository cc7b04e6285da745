"""What a relaunch trusts and repairs in a run folder (:meth:`RunDir.check`, :mod:`compt.jobs.recovery`),
the CSV log that continues on resume, the divergence guard, and diverged runs in ``compt report``."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from compt import PromptBank, PromptBankConfig
from compt.errors import RunDiverged
from compt.jobs.recovery import checkpoint_problem, repair, start_forced_run
from compt.report import build_report, scan
from compt.runs import RunDir, bank_problem, results_problems
from compt.training.divergence import DivergenceGuard
from compt.training.loggers import ResumableCSVLogger
from compt.utils import current_umask
from tests.test_report import fake_results, write_run


def finished_run(folder: Path) -> RunDir:
    """A run folder as train.py leaves it: a complete results.json, bank/ and a resume checkpoint."""
    run = RunDir(folder)
    run.write_results(fake_results("ssum", 8, 1, {"rte": 70.0}))
    PromptBank(PromptBankConfig(method="ssum", task_names=["rte"], d_model=8, n_sources=2)).save(run.bank_dir)
    run.last_checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.ones(3)}, "global_step": 4}, run.last_checkpoint)
    return run


def test_a_finished_run_is_done_only_with_whole_results_and_bank(tmp_path):
    run = finished_run(tmp_path / "job")
    assert run.check().status == "done" and run.check().problem is None

    results = run.read_results()
    del results["primary"]
    results["k"] = "8"
    run.write_results(results)
    check = run.check()
    assert check.status == "resume" and "missing 'primary'" in check.problem and "'k' is str" in check.problem
    assert run.status() == "done"  # what the file claims; check() is what a launch does

    run.write_results(fake_results("ssum", 8, 1, {"rte": 70.0}))
    weights = run.bank_dir / "prompt_bank.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated
    assert "bank/ is damaged" in run.check().problem
    weights.unlink()
    assert "no prompt_bank.safetensors" in bank_problem(run.bank_dir)
    (run.bank_dir / "prompt_bank.json").unlink()
    run.bank_dir.rmdir()
    assert run.check().problem == "no bank/ folder"
    run.last_checkpoint.unlink()
    assert run.check().status == "new"


def test_results_schema_names_what_is_wrong():
    assert results_problems(fake_results("pt", 8, 1, {"rte": 1.0})) == []
    partial = {"status": "complete", "avg": 1.0}
    assert "missing 'method', 'k'" in results_problems(partial)[0]
    no_task = fake_results("pt", 8, 1, {"rte": 1.0}) | {"tasks": ["rte", "cola"]}
    assert results_problems(no_task) == ["no primary metric for task(s) ['cola']"]
    assert results_problems([1]) == ["not a JSON object but list"]


def test_checkpoints_are_checked_without_unpickling(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.arange(1000.0)}}, path)
    whole = path.read_bytes()
    assert checkpoint_problem(path) is None
    path.write_bytes(whole[: len(whole) // 2])
    assert "BadZipFile" in checkpoint_problem(path)
    path.write_bytes(b"")
    assert checkpoint_problem(path) is not None
    path.write_bytes(os.urandom(4096))
    assert checkpoint_problem(path) is not None
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0xFF  # a flipped bit inside a tensor's data
    path.write_bytes(bytes(flipped))
    assert checkpoint_problem(path) is not None


def test_repair_removes_temp_files_and_moves_damaged_files_aside(tmp_path, caplog):
    run = finished_run(tmp_path / "job")
    (run.path / ".results.json.abc123").write_text("{")
    (run.path / "predictions.tmp").write_text("")
    (run.last_checkpoint.parent / "last.ckpt.tmp").write_bytes(b"PK")
    (run.path / "csv").mkdir()
    (run.path / "csv" / "keep.tmp").write_text("a logger's own file")
    sub = RunDir(run.path / "tasks" / "rte")  # a sub-run (method=pt_single) with a truncated checkpoint
    sub.last_checkpoint.parent.mkdir(parents=True)
    sub.last_checkpoint.write_bytes(run.last_checkpoint.read_bytes()[:100])
    results = run.read_results()
    del results["masks"]
    run.write_results(results)

    repair(run)
    assert run.temp_files() == [] and (run.path / "csv" / "keep.tmp").exists()
    assert (
        not sub.last_checkpoint.exists()
        and len(list(sub.last_checkpoint.parent.glob("last.ckpt.corrupt-*"))) == 1
    )
    assert not run.results_file.exists() and len(list(run.path.glob("results.json.damaged-*"))) == 1
    assert run.last_checkpoint.exists() and run.check().status == "resume"
    assert "finished from its last.ckpt" in caplog.text and "restarts from scratch" in caplog.text


def test_a_forced_run_removes_the_old_results_first_and_marks_the_folder(tmp_path):
    run = finished_run(tmp_path / "job")
    stage1 = finished_run(run.path / "stage1")
    start_forced_run(run)
    assert not run.results_file.exists() and not stage1.results_file.exists()
    assert not run.last_checkpoint.exists() and not stage1.last_checkpoint.exists()
    assert not run.bank_dir.exists() and not stage1.bank_dir.exists()
    assert json.loads(run.forced_marker.read_text())["pid"] == os.getpid()
    assert run.check().status == "new"


def test_results_and_bank_files_get_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        run = finished_run(tmp_path / "job")
        for path in (run.results_file, run.bank_dir / "prompt_bank.safetensors"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
        assert current_umask() == 0o022
    finally:
        os.umask(previous)


# ---------------------------------------------------------------------------------------------- CSV log
def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_csv_log_continues_a_resumed_run_and_never_repeats_a_step(tmp_path):
    first = ResumableCSVLogger(tmp_path, name="csv", version="")
    for step in range(4):
        first.log_metrics({"train/loss": float(step)}, step=step)
    assert first.rows_written() == 4  # the count a checkpoint records
    first.log_metrics({"train/loss": 4.0, "val/avg": 50.0}, step=4)  # after the checkpoint: a new column
    first.save()
    metrics = tmp_path / "csv" / "metrics.csv"
    assert [r["step"] for r in _rows(metrics)] == ["0", "1", "2", "3", "4"]

    resumed = ResumableCSVLogger(tmp_path, name="csv", version="")  # the relaunch keeps the file
    resumed.keep_rows(4)  # resuming from the checkpoint at 4 rows: step 4 will be logged again
    resumed.log_metrics({"train/loss": 4.5}, step=4)
    resumed.log_metrics({"train/loss": 5.0}, step=5)
    resumed.save()
    rows = _rows(metrics)
    assert [r["step"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert rows[4]["train/loss"] == "4.5" and "val/avg" in rows[0]
    assert not list(metrics.parent.glob("*.tmp"))

    ResumableCSVLogger(tmp_path, name="csv", version="").keep_rows(0)  # a run from scratch: a new log
    assert _rows(metrics) == []


# ---------------------------------------------------------------------------------------------- divergence
class _Strategy:
    @staticmethod
    def reduce(tensor, reduce_op=None):
        return tensor


def _step(guard: DivergenceGuard, trainer, module, loss: float) -> None:
    trainer.global_step += 1
    guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, None, 0)


def _no_sync(*args, **kwargs):
    raise AssertionError("the guard read a tensor back between its reads")


def test_the_guard_reads_its_flag_at_the_cadence_and_names_the_first_bad_step(monkeypatch):
    module = SimpleNamespace(device=torch.device("cpu"), bank=torch.nn.Linear(2, 2))
    trainer = SimpleNamespace(global_step=0, log_every_n_steps=4, strategy=_Strategy())
    guard = DivergenceGuard()
    guard.on_train_start(trainer, module)
    with monkeypatch.context() as between_reads:  # no host sync between reads: nothing is read back
        for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
            between_reads.setattr(torch.Tensor, name, _no_sync)
        _step(guard, trainer, module, 1.0)
        _step(guard, trainer, module, float("nan"))  # step 2: the first bad loss, not read yet
        _step(guard, trainer, module, 1.0)
    with pytest.raises(RunDiverged, match="diverged at step 2") as raised:
        _step(guard, trainer, module, float("inf"))  # step 4: the read
    assert raised.value.step == 2 and "learning rate" in str(raised.value)

    guard.on_train_start(trainer, module)
    with torch.no_grad():
        module.bank.weight[0, 0] = float("nan")  # a parameter gone bad with a finite loss
    with pytest.raises(RunDiverged, match=f"at step {trainer.global_step}"):
        guard.on_train_epoch_end(trainer, module)


def test_diverged_runs_are_listed_apart_and_never_averaged(tmp_path):
    write_run(tmp_path, "ok", fake_results("pt", 8, 1, {"rte": 60.0}))
    diverged = fake_results("pt", 8, 2, {"rte": 0.0}) | {
        "status": "diverged",
        "diverged": {"step": 7, "message": "training diverged at step 7"},
    }
    write_run(tmp_path, "nan", diverged)
    result = scan([tmp_path], progress=False)
    assert [r.results["seed"] for r in result.runs] == [1]
    assert [d.path.name for d in result.diverged] == ["nan"] and "step 7" in result.diverged[0].reason
    assert result.missing == []
    report = build_report([tmp_path], tmp_path / "out", plots=False, progress=False)
    assert report.tables[0].rows[0][1]["rte"].n == 1
    assert "## Diverged runs (1, not averaged)" in report.markdown
    assert "Diverged runs" in report.html.read_text()


def test_every_loggers_folder_keeps_its_own_temporary_files(tmp_path):
    """The loggers of conf/logger write their own ``*.tmp`` files (TensorBoard, MLflow's store): a relaunch's
    sweep of compt's temporary files leaves their folders alone."""
    run = finished_run(tmp_path / "job")
    kept = [run.path / folder / "events.tmp" for folder in ("wandb", "csv", "tensorboard", "mlruns")]
    for path in kept:
        path.parent.mkdir()
        path.write_text("a logger's own file")
    (run.path / "predictions.tmp").write_text("")
    assert run.temp_files() == [run.path / "predictions.tmp"]
    repair(run)
    assert all(path.exists() for path in kept)
