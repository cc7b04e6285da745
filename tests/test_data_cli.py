"""``compt data check`` and ``compt data snapshot``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest

from compt.cli import main
from compt.data import bundled_demo_dir

TASKS = "rte,mnli,sst2,stsb,cola,qqp,mrpc"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def faulty_dir(tmp_path):
    """A copy of the demo data with one planted fault per task (rte is left clean)."""
    root = tmp_path / "data"
    for name in ("rte", "mnli", "sst2", "stsb", "cola", "mrpc"):
        shutil.copytree(bundled_demo_dir() / name, root / name)
    # mnli: a column missing
    path = root / "mnli" / "train.jsonl"
    _write(path, [{k: v for k, v in r.items() if k != "hypothesis"} for r in _rows(path)])
    # sst2: two labels out of range
    path = root / "sst2" / "validation.jsonl"
    rows = _rows(path)
    rows[0]["label"], rows[1]["label"] = 2, -1
    _write(path, rows)
    # stsb: a score above 5
    path = root / "stsb" / "train.jsonl"
    rows = _rows(path)
    rows[5]["label"] = 7.5
    _write(path, rows)
    # cola: the evaluation split missing
    (root / "cola" / "validation.jsonl").unlink()
    # mrpc: an empty evaluation split (parquet keeps the columns)
    (root / "mrpc" / "validation.jsonl").unlink()
    datasets.Dataset.from_dict({"sentence1": [], "sentence2": [], "label": [], "idx": []}).to_parquet(
        str(root / "mrpc" / "validation.parquet")
    )
    # qqp: no folder at all
    return root


def test_check_reports_every_planted_fault(faulty_dir, capsys):
    assert main(["data", "check", str(faulty_dir), "--tasks", TASKS]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 6, out
    assert "mnli/train" in out and "missing column(s) ['hypothesis']" in out
    assert "sst2/validation" in out and "2 row(s) with a label outside" in out
    assert "stsb/train" in out and "7.5 (1 rows)" in out
    assert "cola/validation: missing file" in out
    assert "mrpc/validation" in out and "the split is empty" in out
    assert "qqp: missing task folder" in out
    assert "rte" not in "".join(problems)
    assert "6 problem(s)" in out


def test_check_passes_on_bundled_demo(capsys):
    assert main(["data", "check", str(bundled_demo_dir())]) == 0
    *warnings, last = capsys.readouterr().out.splitlines()
    assert last.startswith("OK:")
    assert all("repeat the input of an earlier row" in w for w in warnings)  # the generated train splits


def test_check_accepts_task_sets(capsys):
    assert main(["data", "check", str(bundled_demo_dir()), "--tasks", "glue"]) == 0
    assert main(["data", "check", str(bundled_demo_dir()), "--tasks", "set2"]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM")]
    assert problems == [
        f"PROBLEM {name}: missing task folder {bundled_demo_dir() / name}"
        for name in ("multinli", "scitail", "imdb", "yelp_polarity", "paws")
    ]  # mrpc is there


def test_snapshot_offline_fails_with_help(tmp_path, capsys):
    code = main(["data", "snapshot", "--tasks", "rte", "--out", str(tmp_path / "snap")])
    assert code == 1
    err = capsys.readouterr().err
    assert "compt data snapshot" in err and "data.source=local" in err


def test_snapshot_writes_checkable_parquet_layout(tmp_path, monkeypatch, capsys):
    import compt.data.folder as folder

    def fake_hub(task, split):
        rows = _rows(bundled_demo_dir() / task.name / f"{split}.jsonl")
        return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]})

    monkeypatch.setattr(folder, "load_hub", fake_hub)
    out = tmp_path / "snap"
    assert main(["data", "snapshot", "--tasks", "rte,stsb", "mnli", "--out", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "mnli/train.parquet",
        "mnli/validation_matched.parquet",
        "rte/train.parquet",
        "rte/validation.parquet",
        "stsb/train.parquet",
        "stsb/validation.parquet",
    ]
    assert main(["data", "check", str(out)]) == 0
    assert "OK:" in capsys.readouterr().out


def test_check_validates_user_tasks_defined_in_the_config_folder(tmp_path, capsys):
    conf = tmp_path / "conf"
    (conf / "tasks").mkdir(parents=True)
    (conf / "tasks" / "sentiment.yaml").write_text(
        "sentiment:\n"
        "  hub_path: someone/sentiment\n"
        "  template: 'sentiment: {sentence}'\n"
        "  label_words: [bad, good]\n"
        "  metrics: [accuracy]\n"
    )
    root = tmp_path / "data"
    shutil.copytree(bundled_demo_dir() / "sst2", root / "sentiment")
    shutil.copytree(bundled_demo_dir() / "rte", root / "rte")
    (root / "notes").mkdir()  # not a task: ignored by the default selection
    assert main(["data", "check", str(root), "--config-dir", str(conf)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"OK: {root} (rte, sentiment)"

    path = root / "sentiment" / "train.jsonl"
    rows = _rows(path)
    rows[3]["label"] = 2
    _write(path, rows)
    assert main(["data", "check", str(root), "--tasks", "sentiment", "--config-dir", str(conf)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM sentiment/train" in out and "1 row(s) with a label outside" in out


def test_check_names_the_folder_searched_for_an_unknown_task(tmp_path, capsys):
    conf = tmp_path / "conf"
    (conf / "tasks").mkdir(parents=True)
    args = ["data", "check", str(bundled_demo_dir()), "--tasks", "rte,nosuchtask", "--config-dir", str(conf)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "unknown task 'nosuchtask'" in err and str(conf / "tasks") in err


def test_the_example_user_task_of_the_repository_config_is_known(tmp_path, capsys):
    from tests.helpers import REPO_ROOT

    args = ["data", "check", str(tmp_path), "--tasks", "emotion", "--config-dir", str(REPO_ROOT / "conf")]
    assert main(args) == 1  # known (conf/tasks/emotion.yaml), but its folder is missing
    assert f"PROBLEM emotion: missing task folder {tmp_path / 'emotion'}" in capsys.readouterr().out
