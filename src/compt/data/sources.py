"""Raw splits from the hub or from a local folder ``<dir>/<task>/<split>.{parquet,jsonl,csv}``.

Both sources return a ``datasets.Dataset`` with the hub's columns and label ids, so everything downstream
(formatting, k-shot, tokenisation) is the same code for both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from compt.atomic import write_problem
from compt.data.validate import check_split
from compt.errors import DataError, DataSourceError
from compt.tasks import TaskSpec

if TYPE_CHECKING:  # imported by the loaders (``LOCAL_FORMATS`` and the file lookup need no `datasets`)
    import datasets

log = logging.getLogger(__name__)

HUB_HELP = (
    "The Hugging Face hub could not be reached and the dataset is not in the local cache. Either run "
    "`compt data snapshot --tasks <tasks> --out DIR` on a machine with internet access and copy DIR here, "
    "then train with `data.source=local data.dir=DIR`; or use the bundled demo data with `data.source=local`."
)

#: file extension -> ``datasets`` packaged builder, in lookup order
LOCAL_FORMATS: dict[str, str] = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def bundled_demo_dir() -> Path:
    """Folder of the demo data shipped inside the package (``compt/assets/demo_data``)."""
    return Path(str(resources.files("compt").joinpath("assets", "demo_data")))


def split_files(folder: str | Path, split: str) -> list[Path]:
    """Every file holding ``split`` in a task folder (``<folder>/<split>.{parquet,jsonl,json,csv}``), in
    lookup order (:data:`LOCAL_FORMATS`)."""
    return [
        Path(folder) / f"{split}{ext}" for ext in LOCAL_FORMATS if (Path(folder) / f"{split}{ext}").is_file()
    ]


def local_file(folder: str | Path, split: str) -> Path | None:
    """The file holding ``split`` in a task folder: the first of :func:`split_files`, or None."""
    return next(iter(split_files(folder, split)), None)


def other_formats(folder: str | Path, split: str) -> list[Path]:
    """The files of ``split`` that :func:`local_file` passes over (the split in several formats)."""
    return split_files(folder, split)[1:]


def formats_warning(used: Path | None, ignored: list[Path]) -> str:
    """The warning for a split present in several formats: which file is read and which are not."""
    names = ", ".join(p.name for p in ignored)
    return (
        f"the split is in several files: {used} is read, {names} ignored (formats are tried in the order "
        f"{', '.join(LOCAL_FORMATS)}); remove the files you do not mean"
    )


def task_folder(task: TaskSpec, source: str, root: str | Path | None) -> Path | None:
    """Local folder of ``task`` (its ``data_dir``, else ``<root>/<task>`` for source=local); None = hub."""
    if task.data_dir is not None:
        return Path(task.data_dir)
    if source == "local":
        return Path(root or bundled_demo_dir()) / task.name
    if source != "hub":
        raise DataError(f"unknown data source {source!r}; use 'hub' or 'local'")
    return None


def load_local_file(path: Path) -> datasets.Dataset:
    """Load one parquet/jsonl/csv file with the ``datasets`` packaged loaders.

    A file without rows (0 bytes, blank lines only, a parquet table of 0 rows) is an empty dataset, which
    :func:`~compt.data.validate.check_split` reports as an empty split.

    Raises:
        DataError: the file cannot be parsed (the message names it and the parser's reason).
    """
    import datasets

    builder = LOCAL_FORMATS[path.suffix]
    if holds_no_rows(path):
        return _empty(path)
    try:
        return datasets.load_dataset(builder, data_files={"data": str(path)}, split="data")
    except ValueError as err:  # an empty file: `datasets` finds "no data"; keep the columns we can see
        if "corresponds to no data" not in str(err):
            raise DataError(f"cannot read {path}: {_reason(err)}") from err
        return _empty(path)
    except Exception as err:  # a file that is not what its extension says (bad JSON, not parquet, ...)
        raise DataError(cache_problem(err, path) or f"cannot read {path}: {_reason(err)}") from err


def cache_problem(err: BaseException, path: Path) -> str | None:
    """The message for a loader error that is the cache's, not the data file's: ``datasets`` writes every file
    it reads into its cache (``~/.cache/huggingface/datasets``), which may be read-only, full or not the user's.
    None when ``err`` is something else."""
    import datasets

    while err is not None:
        name = getattr(err, "filename", None)
        if write_problem(err) is not None and name and Path(name).absolute() != path.absolute():
            return (
                f"the datasets cache {datasets.config.HF_DATASETS_CACHE} cannot be written ({write_problem(err)}: "
                f"{name}), so {path} cannot be loaded; make the cache writable, or point HF_DATASETS_CACHE (or "
                "HF_HOME) at a writable folder"
            )
        err = err.__cause__ or err.__context__
    return None


def holds_no_rows(path: Path) -> bool:
    """Whether a data file has no rows: 0 bytes, only blank lines (jsonl/json/csv), or 0 parquet rows."""
    size = path.stat().st_size
    if size == 0:
        return True
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_metadata(path).num_rows == 0
        except Exception:  # not a parquet file: the loader says so
            return False
    if size > 1 << 20:
        return False
    return not path.read_bytes().strip()


def _empty(path: Path) -> datasets.Dataset:
    """An empty dataset, with a parquet file's columns when it has any."""
    import datasets

    if path.suffix == ".parquet" and path.stat().st_size:
        import pyarrow.parquet as pq

        return datasets.Dataset(pq.read_table(path))
    return datasets.Dataset.from_dict({})


def _reason(err: BaseException) -> str:
    """The innermost cause of a loader error (``datasets`` wraps the parser's error in a generic one)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")


def load_hub(task: TaskSpec, split: str) -> datasets.Dataset:
    """``datasets.load_dataset(hub_path, hub_name, split=split)``; unreachable -> ``DataSourceError``."""
    if task.hub_path is None:
        raise DataError(f"task {task.name!r} has no hub_path; use data.source=local with data.dir=...")
    import datasets

    try:
        return datasets.load_dataset(task.hub_path, task.hub_name, split=split)
    except Exception as err:  # offline / not cached / no such config: one actionable message
        raise DataSourceError(
            f"could not load {task.hub_path}"
            + (f" ({task.hub_name})" if task.hub_name else "")
            + f" split {split!r} for task {task.name!r}: {type(err).__name__}: {err}\n{HUB_HELP}"
        ) from err


def filter_rows(task: TaskSpec, dataset: datasets.Dataset) -> datasets.Dataset:
    """The rows of ``dataset`` that ``task.row_filter`` keeps (all of them without a filter), e.g. one MRQA
    subset. A filter column the data lacks is left to :func:`check_split`, which names it."""
    wanted = dict(task.row_filter or {})
    if not wanted or not set(wanted) <= set(dataset.column_names) or len(dataset) == 0:
        return dataset
    if all(set(dataset.unique(c)) == {v} for c, v in wanted.items()):  # already filtered (a snapshot)
        return dataset
    columns = list(wanted)

    def keep(batch: dict[str, list]) -> list[bool]:
        return [all(batch[c][i] == wanted[c] for c in columns) for i in range(len(batch[columns[0]]))]

    return dataset.filter(keep, batched=True, desc=f"select {task.name}")


#: how a user makes or checks a local data folder
LOCAL_HELP = "Write the folder with `compt data snapshot` or check it with `compt data check DIR`."


def _no_file(task: TaskSpec, split: str, folder: Path) -> str:
    return f"no data for task {task.name!r} split {split!r}: expected {folder}/{split}.{{parquet,jsonl,csv}}"


def require_local_files(
    tasks: Sequence[TaskSpec], source: str = "hub", root: str | Path | None = None
) -> None:
    """Check, before anything is loaded, that every local split a run reads (each task's ``train_split`` and
    ``eval_split``) has a file; hub tasks are not checked (only loading them tells).

    Raises:
        DataError: naming every missing file at once.
    """
    missing = []
    for task in tasks:
        folder = task_folder(task, source, root)
        if folder is None:
            continue
        for split in dict.fromkeys((task.train_split, task.eval_split)):
            if local_file(folder, split) is None:
                missing.append(_no_file(task, split, folder))
    if missing:
        raise DataError(f"{'; '.join(missing)}. {LOCAL_HELP}")


def load_split(
    task: TaskSpec, split: str, source: str = "hub", root: str | Path | None = None
) -> datasets.Dataset:
    """A validated raw split of ``task``.

    Args:
        task: the task (its ``data_dir``, when set, wins over ``source``).
        split: split name, e.g. ``task.train_split``.
        source: ``"hub"`` or ``"local"``.
        root: local folder; None with ``source="local"`` = the bundled demo data.
    Raises:
        DataSourceError: hub unreachable and not cached.
        DataError: missing file or column, empty split, label outside the task's labels.
    """
    folder = task_folder(task, source, root)
    if folder is None:
        dataset, origin = load_hub(task, split), f"hub {task.hub_path}"
    else:
        path = local_file(folder, split)
        if path is None:
            raise DataError(f"{_no_file(task, split, folder)}. {LOCAL_HELP}")
        ignored = other_formats(folder, split)
        if ignored:
            log.warning("[compt] warning: %s/%s: %s", task.name, split, formats_warning(path, ignored))
        dataset, origin = load_local_file(path), str(path)
    dataset = filter_rows(task, dataset)
    check_split(task, split, dataset, origin)
    return dataset
