"""Outputs written whole or not at all (:mod:`compt.atomic`), and the errors of a disk that refuses them."""

from __future__ import annotations

import pytest

from compt.atomic import atomic_file, atomic_folder, writable_problem, write_text_atomic
from compt.errors import OutputWriteError
from tests.filesystems import fill, read_only_folder, small_disk


def test_a_file_whose_writing_fails_keeps_its_old_content(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(path) as handle:
        handle.write("new, half")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n" and oct(path.stat().st_mode & 0o777) != "0o600"


def test_a_full_disk_is_one_error_naming_the_file_and_keeps_the_old_one(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "report.md"
        path.write_text("old\n")
        fill(disk)
        with pytest.raises(OutputWriteError) as raised:
            write_text_atomic(path, "x" * 100_000)
        assert path.read_text() == "old\n"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "report.md"]
    message = str(raised.value)
    assert message.startswith(f"cannot write {path}: the disk is full") and "\n" not in message


def test_a_read_only_folder_is_one_error_naming_the_file(tmp_path):
    with read_only_folder(tmp_path / "ro") as folder:
        with pytest.raises(
            OutputWriteError, match=f"cannot write {folder}/out.json: .*(read-only|permission)"
        ):
            write_text_atomic(folder / "out.json", "{}")
        assert writable_problem(folder / "new") in (
            f"{folder} is on a read-only file system",
            f"no permission to write in {folder}",
        )


def test_a_dangling_link_is_named_as_such(tmp_path):
    (tmp_path / "run").symlink_to(tmp_path / "gone" / "run")
    assert writable_problem(tmp_path / "run") == (
        f"{tmp_path}/run is a symbolic link to {tmp_path}/gone/run, which does not exist; create its target "
        "or remove the link"
    )
    with pytest.raises(OutputWriteError, match="symbolic link to .*which does not exist"):
        write_text_atomic(tmp_path / "run" / "results.json", "{}")


def _earlier(folder):
    return (folder / "marker").is_file()


def test_a_folder_is_swapped_in_whole(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "marker").write_text("old")
    (target / "weights").write_text("old weights")
    with pytest.raises(RuntimeError), atomic_folder(target, _earlier) as build:
        (build / "marker").write_text("new")
        raise RuntimeError("killed before the weights")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"marker": "old", "weights": "old weights"}
    with atomic_folder(target, _earlier) as build:
        (build / "marker").write_text("new")
        (build / "config").write_text("new config")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"marker": "new", "config": "new config"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # nothing left beside it
    with atomic_folder(tmp_path / "fresh") as build:
        (build / "marker").write_text("first")
    assert (tmp_path / "fresh" / "marker").read_text() == "first"
    assert (tmp_path / "fresh").stat().st_mode & 0o777 != 0o700


def test_a_folder_is_swapped_by_two_renames_where_no_exchange_exists(tmp_path, monkeypatch):
    monkeypatch.setattr("compt.atomic.exchange", lambda first, second: False)
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "marker").write_text("old")
    with atomic_folder(target, _earlier) as build:
        (build / "marker").write_text("new")
    assert files(target) == {"marker": "new"} and sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def files(folder):
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_a_folder_that_is_not_an_earlier_output_is_never_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with (
        pytest.raises(OutputWriteError, match="exists and is not an earlier output"),
        atomic_folder(tmp_path / "mine", _earlier),
    ):
        pass
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputWriteError, match="is a file, not a folder"), atomic_folder(tmp_path / "file"):
        pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
