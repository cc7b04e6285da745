"""Messages that must not mislead: a boolean label counted apart, errors in the keys a user types, duplicated
rows and a split present in two formats warned about."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from compt.cli import main
from compt.config.keys import typed_keys
from compt.config.run_config import RunConfig
from compt.data import bundled_demo_dir
from compt.data.sources import load_local_file, load_split
from compt.data.validate import development_copies, find_problems
from compt.errors import ConfigError
from compt.tasks import get_task
from tests.test_configs import composed


def rte_folder(root: Path) -> Path:
    shutil.copytree(bundled_demo_dir() / "rte", root / "rte")
    return root


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_boolean_label_is_counted_apart_from_the_class_id_1(tmp_path):
    path = rte_folder(tmp_path) / "rte" / "validation.jsonl"
    rows = rows_of(path)
    assert rows[0]["label"] == 1  # the 1s come first: True was counted with them and passed
    rows[3]["label"] = True
    write_rows(path, rows)
    [problem] = find_problems(get_task("rte"), "validation", load_local_file(path))
    assert "1 row(s) with a label outside the task's labels: True (1 rows)" in problem


@pytest.mark.parametrize(
    ("override", "start"),
    [
        ("optim.lr.router=0", "optim.lr.router must be > 0"),
        ("eval.max_samples=0", "eval.max_samples must be >= 1 or -1 (all)"),
        ("eval.batch_size=0", "eval.batch_size must be >= 1"),
        ("router.sample=x", "router.sample='x' is not one of"),
        ("prompt.encoder=foo", "prompt.encoder='foo' is not one of"),
    ],
)
def test_config_errors_name_the_key_the_user_typed(override, start):
    with pytest.raises(ConfigError) as raised:
        RunConfig.from_hydra(composed("experiment=demo", override))
    assert str(raised.value).startswith(start)
    assert "Config." not in str(raised.value) and "lr_router" not in str(raised.value)


def test_every_library_field_the_schema_feeds_has_a_typed_key():
    keys = typed_keys()
    assert keys["DataConfig.eval_max_samples"] == "eval.max_samples"
    assert keys["OptimConfig.lr_private"] == "optim.lr.private"
    assert keys["PromptBankConfig.freeze_sources"] == "sources.freeze"
    assert len(keys) > 40


def test_duplicated_rows_are_warned_about(tmp_path, capsys):
    root = rte_folder(tmp_path)
    train = root / "rte" / "train.jsonl"
    rows = rows_of(train)
    write_rows(train, [rows[i % 6] for i in range(len(rows))])  # six examples, each repeated
    assert main(["data", "check", str(root), "--tasks", "rte"]) == 0
    out = capsys.readouterr().out
    assert f"WARNING rte/train ({train}): 58 row(s): 6, 7, 8, 9, 10, ... (numbered from 0) repeat" in out
    kshot = [{"input_ids": [5, 1]}, {"input_ids": [7, 1]}]
    development = [{"input_ids": [7, 1], "row": 12}, {"input_ids": [9, 1], "row": 3}]
    assert development_copies(get_task("rte"), kshot, development) == (
        "rte: 1 of 2 development row(s) have the same input as a k-shot training row (train 1 row(s): 12 "
        "(numbered from 0)): the split repeats rows, so validation counts examples the prompts were trained "
        "on; drop the duplicated rows (`compt data check` lists them)"
    )
    assert development_copies(get_task("rte"), kshot, development[1:]) is None


def test_a_split_in_two_formats_says_which_file_is_read(tmp_path, capsys, caplog):
    root = rte_folder(tmp_path)
    (root / "rte" / "validation.csv").write_text("sentence1,sentence2,label\na,b,0\n")
    with caplog.at_level(logging.WARNING):
        load_split(get_task("rte"), "validation", "local", root)
    assert "validation.jsonl is read, validation.csv ignored" in caplog.text
    assert main(["data", "check", str(root), "--tasks", "rte"]) == 0
    assert "WARNING rte/validation: the split is in several files" in capsys.readouterr().out
