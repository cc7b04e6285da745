"""Every output written whole or not at all, and a disk that refuses it answered in one line: ``compt predict``
(streamed), ``compt export`` (a folder swapped in), ``compt report``, the CSV logger's ``hparams.yaml``, the job
claim and the datasets cache. Full and read-only file systems are small tmpfs mounts (tests/filesystems.py)."""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
from pathlib import Path

import pytest

from compt.atomic import environment_error
from compt.cli import main
from compt.data import bundled_demo_dir
from compt.errors import DataError, InferenceError, OutputWriteError
from compt.inference import load_for_inference
from compt.inference.rows import CHUNK_ROWS, check_input, row_chunks
from compt.tasks import get_task
from tests.filesystems import fill, read_only_folder, small_disk
from tests.test_predict_export import save_bank
from tests.test_report import fake_results, write_run


def rte_rows(count: int) -> list[dict]:
    """``count`` rte rows (the demo's validation rows, repeated)."""
    path = bundled_demo_dir() / "rte" / "validation.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [rows[i % len(rows)] for i in range(count)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    """A fresh rte/sst2 bank for the tiny T5, the prompt before the text (exportable)."""
    return save_bank(tmp_path_factory.mktemp("bank"), position="before")


# ---------------------------------------------------------------------------------------------- predict
def test_predict_reads_predicts_and_yields_chunk_by_chunk(bank, tmp_path):
    rows = rte_rows(CHUNK_ROWS + 5)
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    assert [len(c) for c in row_chunks(source)] == [CHUNK_ROWS, 5]
    assert check_input(source, get_task("rte")) == CHUNK_ROWS + 5
    consumed = []

    def chunks():
        for chunk in row_chunks(source):
            consumed.append(len(chunk))
            yield chunk

    predictor = load_for_inference(bank, device="cpu")
    stream = predictor.predict_chunks(chunks(), "rte", batch_size=4)
    first = next(stream)
    assert consumed == [CHUNK_ROWS]  # the first prediction comes before the rest of the file is read
    assert first["index"] == 0 and first["input"] == get_task("rte").format_input(rows[0])
    whole = predictor.predict(rows[:6], "rte", batch_size=4)
    assert [first, *(next(stream) for _ in range(5))] == whole


def test_predict_input_formats_are_read_like_training_files(tmp_path):
    rte = get_task("rte")
    (tmp_path / "rows.csv").write_text("\ufeffsentence1,sentence2,label\nA man sleeps.,,1\nx,y,0\n")
    assert list(row_chunks(tmp_path / "rows.csv")) == [
        [
            {"sentence1": "A man sleeps.", "sentence2": None, "label": 1},
            {"sentence1": "x", "sentence2": "y", "label": 0},
        ]
    ]
    with pytest.raises(InferenceError, match=r"column 'sentence2' has no text .* in 1 row\(s\): 0"):
        check_input(tmp_path / "rows.csv", rte)
    (tmp_path / "rows.json").write_text('[{"sentence1": "a", "sentence2": "b"}]')
    assert check_input(tmp_path / "rows.json", rte) == 1
    (tmp_path / "rows.jsonl").write_text('\ufeff{"sentence1": "a", "sentence2": "b"}\n[1]\n')
    with pytest.raises(InferenceError, match="line 2 is a JSON list, not an object"):
        check_input(tmp_path / "rows.jsonl", rte)


def test_predict_on_a_full_disk_is_one_line_and_keeps_the_old_output(bank, tmp_path, capsys):
    long = [{**row, "sentence1": row["sentence1"] + " and so on" * 200} for row in rte_rows(60)]
    source = write_jsonl(tmp_path / "rows.jsonl", long)  # about 130 KB of predictions (each input repeated)
    with small_disk(tmp_path / "disk", kib=256) as disk:
        out = disk / "preds.jsonl"
        out.write_text("old\n")
        fill(disk, leave_kib=80)  # room enough to start (the check before loading the backbone passes)
        argv = ["predict", "--bank", str(bank), "--task", "rte", "--input", str(source), "--device", "cpu"]
        assert main([*argv, "--output", str(out)]) == 2
        assert out.read_text() == "old\n"  # not a truncated JSONL
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "preds.jsonl"]
    err = capsys.readouterr().err
    [line] = [x for x in err.splitlines() if x.startswith("compt")]
    assert "Traceback" not in err
    assert line.startswith(f"compt: cannot write {out}: the disk is full") and "--output FILE" in line


def test_predict_to_a_full_standard_output_is_one_line(bank, tmp_path, monkeypatch, capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    source = write_jsonl(tmp_path / "rows.jsonl", rte_rows(3))
    full = open("/dev/full", "w")  # noqa: SIM115 (closing flushes again, which fails)
    monkeypatch.setattr("sys.stdout", full)
    assert main(["predict", "--bank", str(bank), "--task", "rte", "--input", str(source)]) == 2
    with contextlib.suppress(OSError):
        full.close()
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("compt")]
    assert line.startswith("compt: cannot write the standard output: the disk is full")


# ---------------------------------------------------------------------------------------------- export
def test_export_on_a_full_disk_leaves_the_earlier_export_whole_or_nothing(bank, tmp_path, capsys):
    with small_disk(tmp_path / "disk", kib=128) as disk:
        argv = ["export", "--bank", str(bank), "--out"]
        assert main([*argv, str(disk / "adapter"), "--task", "sst2"]) == 0
        before = files_of(disk / "adapter")
        assert {"adapter_config.json", "adapter_model.safetensors", "compt_export.json"} <= set(before)
        fill(disk)
        assert main([*argv, str(disk / "adapter"), "--task", "rte"]) == 2  # into the earlier export
        assert main([*argv, str(disk / "fresh"), "--task", "rte"]) == 2  # into a new folder
        assert files_of(disk / "adapter") == before  # sst2's weights beside sst2's record, not rte's
        assert sorted(p.name for p in disk.iterdir()) == ["adapter", "filler"]  # no half-built folder
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in lines[-2:]] == ["compt", "compt"]
    assert "the disk is full" in lines[-1] and "--out DIR" in lines[-1]


def test_export_replaces_an_earlier_export_whole_and_nothing_else(bank, tmp_path, capsys):
    out = tmp_path / "adapter"
    assert main(["export", "--bank", str(bank), "--task", "sst2", "--out", str(out)]) == 0
    (out / "stale.bin").write_text("left by the sst2 export")
    assert main(["export", "--bank", str(bank), "--task", "rte", "--out", str(out)]) == 0
    assert "stale.bin" not in files_of(out)
    assert json.loads((out / "compt_export.json").read_text())["task"] == "rte"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["export", "--bank", str(bank), "--task", "rte", "--out", str(mine)]) == 2
    assert files_of(mine) == {"notes.txt": b"keep"}
    assert "exists and is not an earlier output" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- read-only
def test_out_on_a_read_only_file_system_is_one_line(bank, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep, "job", fake_results("ssum", 8, 1, {"rte": 70.0}))
    source = write_jsonl(tmp_path / "rows.jsonl", rte_rows(3))
    with read_only_folder(tmp_path / "ro") as ro:
        commands = [
            ["report", str(sweep), "--out", str(ro / "report"), "--no-plots", "--quiet"],
            [*f"predict --task rte --bank {bank} --input {source}".split(), "--output", str(ro / "p")],
            ["export", "--bank", str(bank), "--task", "rte", "--out", str(ro / "adapter")],
        ]
        for argv in commands:
            assert main(argv) == 2, argv
            lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("compt")]
            assert len(lines) == 1 and lines[0].startswith("compt: cannot write") and str(ro) in lines[0]
            assert "read-only" in lines[0] or "permission" in lines[0]
        assert list(ro.iterdir()) == []


# ---------------------------------------------------------------------------------------------- training
def test_the_csv_loggers_hparams_file_is_never_left_empty_on_a_full_disk(tmp_path):
    from compt.training.loggers import _AppendingWriter

    with small_disk(tmp_path / "disk") as disk:
        writer = _AppendingWriter(str(disk / "csv"))
        writer.log_hparams({"method": "ssum"})
        fill(disk)
        with pytest.raises(OutputWriteError, match=r"cannot write .*/csv/hparams.yaml: the disk is full"):
            writer.log_hparams({"notes": "x" * 50_000})
        assert (disk / "csv" / "hparams.yaml").read_text() == "method: ssum\n"
        assert sorted(p.name for p in (disk / "csv").iterdir()) == ["hparams.yaml"]


def test_a_checkpoint_on_a_full_disk_leaves_no_partial_file(tmp_path):
    from types import SimpleNamespace

    from compt.training.callbacks import CheckpointWriteError, LastCheckpoint

    def half_then_full(path, weights_only=False):
        Path(path).write_bytes(b"PK half an archive")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    trainer = SimpleNamespace(global_step=3, sanity_checking=False, save_checkpoint=half_then_full)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointWriteError, match=r"\(No space left on device\): free some space, or train"):
        LastCheckpoint(tmp_path / "checkpoints" / "last.ckpt").on_train_end(trainer, None)
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_a_claim_on_a_full_disk_is_one_error_and_leaves_no_draft(tmp_path):
    from compt.runs.claims import claim_job

    with small_disk(tmp_path / "disk") as disk:
        (disk / "job").mkdir()
        fill(disk)
        with (
            pytest.raises(OutputWriteError, match=r"cannot write .*/job/\.compt-claim: the disk is full"),
            claim_job(disk / "job"),
        ):
            pass
        assert list((disk / "job").iterdir()) == []


def test_a_dangling_symlink_or_a_full_disk_as_the_run_folder_is_one_line_before_hydra_writes(tmp_path):
    from omegaconf import OmegaConf

    from compt.jobs.preflight import OutputFolderCheck

    def start(folder: Path) -> str:
        with pytest.raises(SystemExit) as raised:
            OutputFolderCheck().on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(folder)}}}))
        return str(raised.value)

    (tmp_path / "run").symlink_to(tmp_path / "gone")  # Hydra's mkdir: FileExistsError
    assert start(tmp_path / "run").startswith(
        f"compt: cannot write to {tmp_path}/run: {tmp_path}/run is a symbolic"
    )
    with small_disk(tmp_path / "disk") as disk:
        fill(disk)
        assert "is full (0 KiB free)" in start(disk / "run")


def test_environment_errors_become_one_line_and_bugs_do_not():
    full = OSError(errno.ENOSPC, "No space left on device", "/run/csv/metrics.csv")
    assert str(environment_error(full, "hydra.run.dir=DIR")) == (
        "cannot write /run/csv/metrics.csv: the disk is full (No space left on device); free some space or "
        "write elsewhere (hydra.run.dir=DIR)"
    )
    denied = OSError(errno.EACCES, "Permission denied", "/data/x")
    assert str(environment_error(denied)) == "cannot access /data/x: permission denied"
    assert environment_error(FileNotFoundError(errno.ENOENT, "No such file", "x")) is None
    assert environment_error(ValueError("a bug")) is None


def test_an_unwritable_datasets_cache_is_named_not_the_data_file(tmp_path, monkeypatch):
    import datasets

    from compt.data.sources import load_local_file

    data = tmp_path / "rows.jsonl"
    shutil.copy(bundled_demo_dir() / "rte" / "validation.jsonl", data)
    with read_only_folder(tmp_path / "home") as home:
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(home / ".cache" / "datasets"))
        with pytest.raises(DataError) as raised:
            load_local_file(data)
    message = str(raised.value)
    assert message.startswith(f"the datasets cache {home}/.cache/datasets cannot be written")
    assert "HF_DATASETS_CACHE" in message and "cannot read" not in message
