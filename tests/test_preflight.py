"""What is refused before a run loads anything, in one line naming the key, value, file or folder: config
values, launches that would re-run a sweep per rank, folders that cannot be written, data files without rows or
text, and ``compt predict`` rows without text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from compt.config.command_line import check_overrides, refuse_unknown_schema_keys
from compt.config.schema import TrainSchema
from compt.data import bundled_demo_dir
from compt.data.sources import load_local_file, load_split
from compt.errors import ConfigError, DataError, InferenceError, LaunchError
from compt.inference.predictor import check_rows, read_rows
from compt.jobs.launch import check_launch
from compt.jobs.preflight import (
    COMPT_TRAINER_ARGUMENTS,
    TRAINER_ARGUMENTS,
    OutputFolderError,
    check_run_config,
    require_writable,
    trainer_argument_names,
    writable_problem,
)
from compt.tasks import get_task
from compt.training.spawn import device_count
from tests.test_configs import composed


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tasks=[]", "tasks= names no task"),
        ("eval.mode=foo", "eval.mode='foo'; choose one of generate, rank"),
        ("eval.cross_prompts=beam", "eval.cross_prompts='beam'; choose one of generate, rank or null (off)"),
        ("model.dtype=fp16", "model.dtype='fp16'; choose one of fp32, bf16 (fp16 is not offered"),
        ("seed=-1", "seed=-1: a seed is an integer in 0..4294967295"),
        ("seed=4294967296", "seed=4294967296"),
        ("optim.epochs=0", "optim.epochs=0 gives 0 training epochs; a run needs at least 1"),
        ("trainer.max_steps=0", "trainer.max_steps=0 trains nothing"),
        (
            "claim.heartbeat_s=0",
            "claim.heartbeat_s=0: the claim's refresh interval must be a positive number",
        ),
        ("claim.heartbeat_s=-5", "claim.heartbeat_s=-5: the claim's refresh interval"),
        # a stale time within a few heartbeats: a second launch would take over a live claim
        (
            "claim.stale_after_s=60",
            "claim.stale_after_s=60 must be at least 3 heartbeats (claim.heartbeat_s=60",
        ),
        ("+trainer.max_epoch=3", "unknown key trainer.max_epoch; did you mean trainer.max_epochs?"),
        ("+trainer.max_epochs=3", "trainer.max_epochs is set by compt (epochs: optim.epochs"),
        # refused by the run's settings (RunConfig) and the bank's masks, before Lightning or the backbone load
        ("optim.lr.router=0", "optim.lr.router must be > 0, got 0"),
        ("eval.masks=[total,src7]", "mask 'src7': the bank has 3 sources (src0..src2)"),
        ("method.mpt_rank=4", "method.mpt_rank applies to method=mpt only (method='ssum')"),
    ],
)
def test_config_values_that_cannot_make_a_run_are_refused(override, message):
    check_run_config(TrainSchema.from_hydra(composed("experiment=demo")))  # the control
    with pytest.raises(ConfigError) as raised:
        check_run_config(TrainSchema.from_hydra(composed("experiment=demo", override)))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


#: known keys and options, free-form sections and Hydra's own overrides: accepted
KNOWN = [
    "experiment=demo",
    "-m",
    "method=ssum,msum",
    "tasks=[rte,mrpc]",
    "optim.lr.router=0.2",
    "+callbacks=[early_stopping,rich_progress_bar]",
    "+callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor",
    "+trainer.accumulate_grad_batches=2",
    "+tasks.rte.train_split=train",
    "logger.wandb.tags=[a]",
    "experiment=null",
    "hydra/launcher=joblib",
    "hydra.run.dir=x",
    "~hparams_search",
]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (
            "+metod=msum",
            "+metod=msum: unknown key metod; did you mean method? (every key: README's key table",
        ),
        ("metod=msum", "metod=msum: unknown key metod; did you mean method?"),
        ("++metod=msum", "++metod=msum: unknown key metod; did you mean method?"),
        (
            "+model.nme=x",
            "+model.nme=x: unknown key model.nme; did you mean model.name? (model has: name, drop",
        ),
        (
            "optim.lr_router=0.1,0.2",
            "optim.lr_router=0.1,0.2: unknown key optim.lr_router; did you mean optim.lr.router?",
        ),
        (
            "tasks=[sst2,rtee]",
            "tasks=[sst2,rtee]: no task or task set rtee in conf/tasks/ (did you mean rte?); "
            "known: boolq, cb, cola, copa, demo, demo_qa, emotion, glue",
        ),
        (
            "method=ssum,msumm",
            "method=ssum,msumm: no option msumm in conf/method/ (did you mean msum?); known: ",
        ),
        (
            "+callbacks=[early_stopping,rich_progres_bar]",
            "+callbacks=[early_stopping,rich_progres_bar]: no option rich_progres_bar in conf/callbacks/ (did you "
            "mean rich_progress_bar?)",
        ),
    ],
)
def test_an_unknown_key_or_option_is_refused_with_or_without_plus(argument, message):
    conf = Path(__file__).resolve().parents[1] / "conf"
    check_overrides(KNOWN, TrainSchema, conf)
    with pytest.raises(ConfigError) as raised:
        check_overrides(["experiment=demo", argument], TrainSchema, conf)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_missing_split_is_found_before_the_backbone_loads(tmp_path):
    """check_run_config runs before anything is loaded (train.py, then run_job): every missing file at once."""
    shutil.copytree(bundled_demo_dir() / "rte", tmp_path / "rte")
    (tmp_path / "rte" / "validation.jsonl").unlink()
    cfg = composed("experiment=demo", "tasks=[rte,sst2]", f"data.dir={tmp_path}")
    with pytest.raises(DataError) as raised:
        check_run_config(TrainSchema.from_hydra(cfg))
    assert str(raised.value).startswith(
        f"no data for task 'rte' split 'validation': expected {tmp_path}/rte/validation.{{parquet,jsonl,csv}}; "
        f"no data for task 'sst2' split 'train'"
    )


def test_an_empty_split_is_found_before_the_backbone_loads(tmp_path):
    for task in ("rte", "sst2"):
        shutil.copytree(bundled_demo_dir() / task, tmp_path / task)
    (tmp_path / "rte" / "validation.jsonl").write_text("")
    (tmp_path / "sst2" / "train.jsonl").write_text("\n\n")  # blank lines: no rows either
    cfg = composed("experiment=demo", "tasks=[rte,sst2]", f"data.dir={tmp_path}")
    with pytest.raises(DataError) as raised:
        check_run_config(TrainSchema.from_hydra(cfg))
    assert str(raised.value).splitlines() == [
        f"rte/validation ({tmp_path}/rte/validation.jsonl): the split is empty (the file holds no rows)",
        f"sst2/train ({tmp_path}/sst2/train.jsonl): the split is empty (the file holds no rows)",
    ]


def test_a_key_a_config_file_adds_is_refused_too():
    refuse_unknown_schema_keys(composed("experiment=demo", "+callbacks.x._target_=a.B"), TrainSchema)
    with pytest.raises(ConfigError, match=r"config: unknown key model.nme; did you mean model.name\?"):
        refuse_unknown_schema_keys(composed("experiment=demo", "+model.nme=x"), TrainSchema)


@pytest.mark.parametrize(
    "trainer", [f"trainer={name}" for name in ("default", "cpu", "gpu", "ddp", "ddp_spawn")]
)
def test_the_trainer_arguments_checked_without_lightning_are_trainers_own(trainer):
    """``TRAINER_ARGUMENTS`` (accepted without importing Lightning) are arguments of Lightning's ``Trainer``
    that compt leaves to the user, and hold every key of ``conf/trainer/``."""
    lightnings = set(trainer_argument_names()) - set(COMPT_TRAINER_ARGUMENTS)
    assert TRAINER_ARGUMENTS - lightnings == set()
    assert set(composed(trainer).trainer) <= TRAINER_ARGUMENTS


def _multirun(**trainer):
    cfg = OmegaConf.create({"trainer": {"strategy": "auto", "devices": 1, **trainer}})
    return cfg, SimpleNamespace(mode=RunMode.MULTIRUN)


@pytest.mark.parametrize(
    ("trainer", "refused"),
    [
        ({"devices": 3}, True),  # the default strategy picks DDP on several devices
        ({"devices": "2"}, True),
        ({"devices": [0, 1]}, True),
        ({"devices": "0,1"}, True),
        ({"strategy": "ddp", "devices": 2}, True),
        ({"strategy": "fsdp", "devices": 2}, True),
        ({"strategy": "ddp_spawn", "devices": 2}, False),  # compt starts the ranks itself
        ({"devices": 1}, False),
        ({"devices": [3]}, False),
        ({"devices": -1, "accelerator": "cpu"}, False),
    ],
)
def test_a_sweep_whose_trainer_would_spawn_ranks_in_process_is_refused(trainer, refused, monkeypatch):
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    cfg, hydra_cfg = _multirun(**trainer)
    if refused:
        with pytest.raises(LaunchError, match="re-launches this script once per rank"):
            check_launch(cfg, hydra_cfg)
    else:
        check_launch(cfg, hydra_cfg)
    check_launch(cfg, SimpleNamespace(mode=RunMode.RUN))  # a single run may use DDP
    monkeypatch.setenv("SLURM_NTASKS", "2")
    check_launch(cfg, hydra_cfg)  # SLURM started the ranks: nothing is re-launched


def test_device_counts():
    assert [device_count(d) for d in (1, "3", [0, 2], "0,1,", "1")] == [1, 3, 2, 2, 1]
    assert device_count(-1, "cpu") == device_count("auto", "cpu") == 1


def test_a_folder_that_cannot_be_written_is_named(tmp_path):
    assert writable_problem(tmp_path / "new" / "deeper") is None  # created later, below a writable folder
    (tmp_path / "file").write_text("")
    assert writable_problem(tmp_path / "file" / "run") == f"{tmp_path / 'file'} is a file, not a folder"
    with pytest.raises(OutputFolderError, match="cannot write to .*file/run.*hydra.run.dir="):
        require_writable(tmp_path / "file" / "run", "train into another folder (hydra.run.dir=DIR)")


# ---------------------------------------------------------------------------------------------- data
@pytest.fixture
def rte_dir(tmp_path) -> Path:
    shutil.copytree(bundled_demo_dir() / "rte", tmp_path / "rte")
    return tmp_path


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _load(root: Path, split: str = "train") -> datasets.Dataset:
    return load_split(get_task("rte"), split, "local", root)


def test_an_empty_file_is_an_empty_split(rte_dir):
    (rte_dir / "rte" / "validation.jsonl").write_text("")
    with pytest.raises(DataError, match=r"^rte/validation \(.*validation.jsonl\): the split is empty"):
        _load(rte_dir, "validation")
    (rte_dir / "rte" / "validation.jsonl").unlink()
    datasets.Dataset.from_list(_jsonl(rte_dir / "rte" / "train.jsonl")).select([]).to_parquet(
        str(rte_dir / "rte" / "validation.parquet")
    )
    with pytest.raises(DataError, match="the split is empty"):
        _load(rte_dir, "validation")


def test_an_unparsable_file_is_one_line_naming_it(rte_dir):
    (rte_dir / "rte" / "train.jsonl").write_text('{"sentence1": "a",\n')
    with pytest.raises(DataError, match=r"^cannot read .*train.jsonl: ArrowInvalid: JSON parse error"):
        load_local_file(rte_dir / "rte" / "train.jsonl")


def test_rows_without_text_are_refused_with_file_row_and_column(rte_dir):
    path = rte_dir / "rte" / "train.jsonl"
    rows = _jsonl(path)
    rows[2]["sentence1"] = None
    del rows[5]["sentence2"]
    _write(path, rows)
    with pytest.raises(DataError) as raised:
        _load(rte_dir)
    message = str(raised.value)
    assert "rte/train (" in message and str(path) in message
    assert "column 'sentence1' has no text (null or missing) in 1 row(s): 2 (numbered from 0)" in message
    assert "column 'sentence2' has no text (null or missing) in 1 row(s): 5" in message


def test_invalid_utf8_is_found_before_it_crashes_a_run(rte_dir):
    path = rte_dir / "rte" / "train.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"sentence1":"', b'"sentence1":"\xff', 1)
    assert b"\xff" in lines[3]
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=r"column 'sentence1' is not valid UTF-8 in 1 row\(s\): 3 "):
        _load(rte_dir)


def test_blank_text_is_a_warning(rte_dir, caplog):
    path = rte_dir / "rte" / "train.jsonl"
    rows = _jsonl(path)
    rows[1]["sentence2"] = "   "
    _write(path, rows)
    assert len(_load(rte_dir)) == len(rows)
    assert "column 'sentence2' is blank in 1 row(s): 1" in caplog.text


def test_data_check_reports_missing_text_and_warns_about_blank_text(rte_dir, capsys):
    from compt.cli import main

    path = rte_dir / "rte" / "validation.jsonl"
    rows = _jsonl(path)
    rows[0]["sentence1"], rows[1]["sentence2"] = None, ""
    _write(path, rows)
    assert main(["data", "check", str(rte_dir), "--tasks", "rte"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM rte/validation" in out and "column 'sentence1' has no text" in out
    assert "WARNING rte/validation" in out and "column 'sentence2' is blank" in out


# ---------------------------------------------------------------------------------------------- predict
def test_predict_refuses_rows_without_text_naming_the_rows(caplog):
    sst2 = get_task("sst2")
    rows = [{"sentence": "fine"}, {"sentence": None}, {}, {"sentence": ["a"]}, {"sentence": {"x": 1}}]
    with pytest.raises(InferenceError) as raised:
        check_rows(sst2, rows, "rows.jsonl")
    message = str(raised.value)
    assert message.startswith("rows.jsonl: column 'sentence' has no text (null or missing) in 2 row(s): 1, 2")
    assert "holds a list, not text in 1 row(s): 3" in message and "holds a dict" in message
    check_rows(sst2, [{"sentence": "fine"}, {"sentence": " "}], "rows.jsonl")
    assert "column 'sentence' is blank in 1 row(s): 1" in caplog.text


def test_predict_input_files_without_rows_or_not_parsable_are_one_line(tmp_path):
    empty, broken = tmp_path / "empty.jsonl", tmp_path / "broken.jsonl"
    empty.write_text("")
    broken.write_text('{"sentence": "fine"}\n\nnot json\n')
    with pytest.raises(InferenceError, match="input file .*empty.jsonl holds no rows"):
        read_rows(empty)
    with pytest.raises(InferenceError, match="cannot read .*broken.jsonl: line 3 is not JSON"):
        read_rows(broken)


def test_compt_predict_with_an_empty_input_file_prints_one_line(tmp_path, capsys):
    from compt import PromptBank, PromptBankConfig
    from compt.cli import main

    PromptBank(PromptBankConfig(method="pt", task_names=["sst2"], d_model=8, backbone="tiny")).save(
        tmp_path / "bank"
    )
    empty = tmp_path / "rows.jsonl"
    empty.write_text("")
    assert main(["predict", "--bank", str(tmp_path / "bank"), "--task", "sst2", "--input", str(empty)]) == 2
    assert capsys.readouterr().err == f"compt: input file {empty} holds no rows\n"


def test_a_checkpoint_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    from compt.training.callbacks import CheckpointWriteError, LastCheckpoint

    def refuse(path, weights_only=False):
        raise PermissionError(13, "Permission denied", str(path))

    trainer = SimpleNamespace(global_step=3, sanity_checking=False, save_checkpoint=refuse)
    with pytest.raises(CheckpointWriteError) as raised:
        LastCheckpoint(tmp_path / "checkpoints" / "last.ckpt").on_train_end(trainer, None)
    message = str(raised.value)
    assert message.startswith(f"cannot write the resume checkpoint {tmp_path}/checkpoints/last.ckpt")
    assert "(Permission denied)" in message and ".tmp" not in message and "\n" not in message
