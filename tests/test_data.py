"""Data layer: sources, k-shot and evaluation subsets, mixing, DDP sharding, batches, errors."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch

from compt.data import (
    DataConfig,
    DataError,
    DataSourceError,
    MixedTaskSampler,
    ShardedBatchSampler,
    bundled_demo_dir,
    epoch_quotas,
    eval_indices,
    mixed_stream,
    mixing_probabilities,
    select_train,
)
from compt.data.encode import _MEMO
from compt.tasks import TASK_SETS, get_task
from compt.training.datamodule import ComptDataModule


def kshot_indices(*args, **kwargs) -> list[int]:
    """The k-shot rows alone (``select_train`` without validation rows)."""
    return select_train(*args, **kwargs)[0]


REPO = Path(__file__).resolve().parents[1]
TINY_T5 = REPO / "src" / "compt" / "assets" / "tiny-t5"
GLUE_REAL = REPO.parent / "shared" / "data" / "glue-real"


@pytest.fixture(scope="module")
def tokenizer():
    """The committed tiny T5 tokenizer when present, else ByT5 (needs no files)."""
    import transformers

    if (TINY_T5 / "tokenizer_config.json").is_file():
        return transformers.AutoTokenizer.from_pretrained(str(TINY_T5))
    return transformers.ByT5Tokenizer()


def demo_config(**kw) -> DataConfig:
    return DataConfig(**{"source": "local", "k": 8, "batch_size": 4, "eval_batch_size": 8, **kw})


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# ------------------------------------------------------------------------------------ demo data
def test_bundled_demo_data_covers_glue_and_is_small():
    root = bundled_demo_dir()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 200_000
    for name in TASK_SETS["glue"]:
        task = get_task(name)
        assert len(read_jsonl(root / name / "train.jsonl")) == 64
        rows = read_jsonl(root / name / f"{task.eval_split}.jsonl")
        assert len(rows) == 32
        assert set(rows[0]) == {*task.required_columns, "idx"}


# ------------------------------------------------------------------------------------ k-shot / eval
def test_kshot_same_across_calls_and_differs_across_seeds():
    rte = get_task("rte")
    golds = [float(i % 2) for i in range(200)]
    a = kshot_indices(rte, golds, 16, seed=1)
    assert a == kshot_indices(rte, golds, 16, seed=1)
    assert len(a) == 16 and len(set(a)) == 16
    assert set(a) != set(kshot_indices(rte, golds, 16, seed=2))
    assert set(a) != set(kshot_indices(get_task("mrpc"), golds, 16, seed=1))  # seeded by task name too


def test_kshot_balanced_gives_k_per_label():
    mnli = get_task("mnli")
    golds = [0.0] * 100 + [1.0] * 30 + [2.0] * 10
    idx = kshot_indices(mnli, golds, 8, seed=3, balanced=True)
    assert Counter(golds[i] for i in idx) == {0.0: 8, 1.0: 8, 2.0: 8}
    with pytest.raises(DataError, match="kshot.allow_fewer=true"):
        kshot_indices(mnli, golds, 12, seed=3, balanced=True)


def test_kshot_balanced_regression_falls_back_with_warning():
    with pytest.warns(UserWarning, match="kshot_balanced ignored"):
        idx = kshot_indices(get_task("stsb"), [0.5 * i for i in range(10)], 4, seed=0, balanced=True)
    assert len(idx) == 4


def test_kshot_too_large():
    rte = get_task("rte")
    golds = [0.0, 1.0] * 5
    with pytest.raises(
        DataError, match=r"k=11 asks for 11 rows but the train split has only 10.*allow_fewer=true"
    ):
        kshot_indices(rte, golds, 11, seed=0)
    assert sorted(kshot_indices(rte, golds, 11, seed=0, allow_fewer=True)) == list(range(10))
    assert sorted(kshot_indices(rte, golds, -1, seed=0)) == list(range(10))


def test_eval_indices_ignore_run_seed(tokenizer):
    assert eval_indices("rte", 277, 100, eval_seed=0) == eval_indices("rte", 277, 100, eval_seed=0)
    assert eval_indices("rte", 277, 100, 0) != eval_indices("rte", 277, 100, 1)
    assert eval_indices("rte", 50, -1, 0) == list(range(50))
    rows = [
        ComptDataModule(["rte", "stsb"], tokenizer, demo_config(seed=s, eval_max_samples=10)).eval_rows("rte")
        for s in (1, 2)
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 10
    trains = [ComptDataModule(["rte"], tokenizer, demo_config(seed=s)).train_sizes() for s in (1, 2)]
    assert trains[0] == trains[1] == {"rte": 8}


def test_validation_from_train_is_disjoint_and_keeps_kshot(tokenizer):
    rte = get_task("rte")
    golds = [float(i % 2) for i in range(64)]
    train, val = __import__("compt.data", fromlist=["select_train"]).select_train(
        rte, golds, 8, 5, n_validation=6
    )
    assert train == kshot_indices(rte, golds, 8, 5) and len(val) == 6 and not set(train) & set(val)
    dm = ComptDataModule(["rte"], tokenizer, demo_config(validation_from_train=6))
    assert len(dm.eval_rows("rte", "validate")) == 6 and len(dm.eval_rows("rte", "test")) == 32


# ------------------------------------------------------------------------------------ mixing and DDP
@pytest.mark.parametrize("temperature", [1.0, 1000.0])
def test_mixing_quotas_follow_temperature_and_rows_are_drawn_without_replacement(temperature):
    sizes = [10, 40, 160]
    expected = mixing_probabilities(sizes, temperature)
    quotas = epoch_quotas(sizes, temperature, 210)
    if temperature == 1.0:
        assert expected == pytest.approx([10 / 210, 40 / 210, 160 / 210])
        assert quotas == [10, 40, 160]
    else:
        assert expected == pytest.approx([1 / 3] * 3, abs=0.01)
        assert quotas == [70, 70, 70]
    stream = mixed_stream(["a", "b", "c"], sizes, temperature, seed=0, epoch=0, length=210)
    counts = Counter(t for t, _ in stream)
    assert [counts[t] for t in range(3)] == quotas
    # each task walks a shuffled cycle: every row of a task is used once before any is used twice
    for t, size in enumerate(sizes):
        uses = Counter(r for task, r in stream if task == t)
        assert sum(uses.values()) == quotas[t] and len(uses) == min(size, quotas[t])
        assert max(uses.values()) - min(uses.values()) <= 1
    # the cycle continues across epochs: the small task's rows stay balanced over epochs 0 and 1
    two_epochs = stream + mixed_stream(["a", "b", "c"], sizes, temperature, seed=0, epoch=1, length=210)
    small = Counter(r for t, r in two_epochs if t == 0)
    assert max(small.values()) - min(small.values()) <= 1


def test_quotas_use_the_largest_remainder_and_sum_to_the_epoch_size():
    assert epoch_quotas([1, 1, 1], 1.0, 10) == [4, 3, 3]  # 3.33 each: the first task takes the extra one
    assert epoch_quotas([30, 10], 1.0, 9) == [7, 2]  # 6.75 / 2.25
    assert epoch_quotas([2, 6], 1.0, 3) == [1, 2]  # 0.75 / 2.25: remainders 0.75 > 0.25
    assert sum(epoch_quotas([3, 5, 7, 11], 2.0, 97)) == 97


def test_stream_depends_on_seed_and_epoch():
    args = (["a", "b"], [5, 7], 1.0)
    assert mixed_stream(*args, 0, 0, 50) == mixed_stream(*args, 0, 0, 50)
    assert mixed_stream(*args, 0, 0, 50) != mixed_stream(*args, 0, 1, 50)
    assert mixed_stream(*args, 0, 0, 50) != mixed_stream(*args, 1, 0, 50)


@pytest.mark.parametrize("group_by_length", [False, True])
def test_ddp_shards_are_disjoint_cover_the_stream_and_pad_less_than_one_example_per_rank(group_by_length):
    names, sizes = ["a", "b", "c"], [6, 9, 12]  # 27 examples per epoch
    lengths = [i % 7 for i in range(sum(sizes))]

    def batches(rank, world, epoch):
        sampler = MixedTaskSampler(names, sizes, 1.0, seed=4, length=27)
        bs = ShardedBatchSampler(
            sampler, 5, rank=rank, world_size=world, lengths=lengths, group_by_length=group_by_length
        )
        bs.set_epoch(epoch)
        return list(bs), len(bs)

    full, n_full = batches(0, 1, 0)
    assert n_full == 6 and [len(b) for b in full if not group_by_length] in ([5, 5, 5, 5, 5, 2], [])
    assert Counter(i for b in full for i in b) == Counter(range(27))  # one device: each example once
    (r0, n0), (r1, n1) = batches(0, 2, 0), batches(1, 2, 0)
    assert n0 == n1 == 3 and len(r0) == len(r1) == 3  # 27 -> 28 (one padded example) -> 14 per rank
    share0, share1 = [i for b in r0 for i in b], [i for b in r1 for i in b]
    assert len(share0) == len(share1) == 14
    stream = list(MixedTaskSampler(names, sizes, 1.0, seed=4, length=27))
    assert Counter(share0 + share1) == Counter(stream + stream[:1])
    if not group_by_length:
        padded = stream + stream[:1]
        assert share0 == padded[0::2] and share1 == padded[1::2]
    assert batches(0, 2, 1)[0] != r0  # set_epoch changes the shard


def test_datamodule_train_loader_shards_and_steps(tokenizer):
    cfg = demo_config(k=10, batch_size=4)
    dms = [ComptDataModule(["sst2", "rte", "mnli"], tokenizer, cfg, rank=r, world_size=2) for r in (0, 1)]
    single = ComptDataModule(["sst2", "rte", "mnli"], tokenizer, cfg, rank=0, world_size=1)
    assert single.steps_per_epoch() == len(single.train_dataloader()) == 8  # 30 examples: 7 × 4 + 2
    assert [dm.steps_per_epoch() for dm in dms] == [4, 4]  # 15 per rank: 3 × 4 + 3
    ids = [
        torch.cat([torch.stack([b["task_ids"], b["input_ids"][:, 0]], 1) for b in dm.train_dataloader()])
        for dm in dms
    ]
    full = torch.cat(
        [torch.stack([b["task_ids"], b["input_ids"][:, 0]], 1) for b in single.train_dataloader()]
    )
    assert len(full) == 30
    # rank r gets examples r, r+2, ... of the one-device stream
    assert torch.equal(ids[0], full[0::2]) and torch.equal(ids[1], full[1::2])


def test_every_kshot_example_appears_exactly_once_per_epoch_of_the_real_loader(tokenizer):
    """k = 8 over the 8 GLUE tasks on one device: 64 examples per epoch, each (task, example) once, 3 epochs."""
    dm = ComptDataModule(TASK_SETS["glue"], tokenizer, demo_config(k=8, batch_size=20))
    pad = tokenizer.pad_token_id
    dm.setup()
    expected = Counter((e["task_id"], tuple(e["input_ids"])) for rows in dm._train for e in rows)
    assert len(expected) == 64 and set(expected.values()) == {1}
    orders = []
    for epoch in range(3):
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)
        assert len(loader) == 4  # 3 full batches of 20 and a last, partial one of 4
        order = [
            (task, tuple(ids[: len(ids) - next(i for i, x in enumerate(reversed(ids)) if x != pad)]))
            for batch in loader
            for task, ids in zip(batch["task_ids"].tolist(), batch["input_ids"].tolist())
        ]
        assert Counter(order) == expected
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]  # a new shuffle every epoch


def test_unequal_task_sizes_get_their_quotas(tokenizer):
    rows = read_jsonl(bundled_demo_dir() / "sst2" / "train.jsonl")
    raw = {
        "sst2": {"train": datasets.Dataset.from_list(rows[:10])},
        "rte": {"train": datasets.Dataset.from_list(read_jsonl(bundled_demo_dir() / "rte" / "train.jsonl"))},
    }
    dm = ComptDataModule(
        ["sst2", "rte"], tokenizer, demo_config(k=-1, temperature=2.0, batch_size=8), raw_splits=raw
    )
    assert dm.train_sizes() == {"sst2": 10, "rte": 64}
    quotas = epoch_quotas([10, 64], 2.0, 74)
    assert quotas == [21, 53]  # 74 · sqrt(10) / (sqrt(10) + sqrt(64)) = 20.96
    counts = Counter(t for b in dm.train_dataloader() for t in b["task_ids"].tolist())
    assert [counts[0], counts[1]] == quotas


def test_eval_shards_cover_each_example_once(tokenizer):
    cfg = demo_config(eval_batch_size=5, eval_max_samples=-1)
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for rank in (0, 1):
        dm = ComptDataModule(["sst2", "rte", "stsb"], tokenizer, cfg, rank=rank, world_size=2)
        for task_id, loader in enumerate(dm.test_dataloader()):
            for batch in loader:
                assert (batch["task_ids"] == task_id).all()
                seen[task_id] += batch["example_ids"].tolist()
    for ids in seen.values():
        assert sorted(ids) == list(range(32))


# ------------------------------------------------------------------------------------ batches
def test_batch_structure(tokenizer):
    dm = ComptDataModule(["sst2", "stsb"], tokenizer, demo_config())
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "task_ids"}
    assert all(v.dtype == torch.long for v in batch.values())
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 4
    lengths = batch["attention_mask"].sum(1)
    assert lengths.max() == batch["input_ids"].shape[1]  # padded to the longest in the batch
    for i, n in enumerate(lengths.tolist()):
        assert batch["input_ids"][i, n - 1] == tokenizer.eos_token_id
        assert (batch["input_ids"][i, n:] == tokenizer.pad_token_id).all()
    ev = next(iter(dm.val_dataloader()[1]))
    assert set(ev) == {"input_ids", "attention_mask", "labels", "task_ids", "example_ids", "gold"}
    assert ev["gold"].dtype == torch.float and ev["example_ids"].tolist() == list(range(8))
    rows = dm.eval_rows("stsb")
    assert [r["gold"] for r in rows[:8]] == pytest.approx(ev["gold"].tolist())
    first = rows[0]
    assert first["input_text"].startswith("stsb: sentence1: ") and first["target_text"] == get_task(
        "stsb"
    ).format_target({"label": first["gold"]})
    for i in range(8):  # labels = the target's token ids (ending in </s>), then -100 up to the longest
        target = tokenizer(rows[i]["target_text"], truncation=True, max_length=8)["input_ids"]
        assert target[-1] == tokenizer.eos_token_id
        assert ev["labels"][i].tolist() == target + [-100] * (ev["labels"].shape[1] - len(target))


def test_truncation_is_by_tokens(tokenizer):
    dm = ComptDataModule(["mnli"], tokenizer, demo_config(max_source_length=8, max_target_length=2))
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[1] == 8
    assert (batch["input_ids"][:, -1] == tokenizer.eos_token_id).all()
    assert batch["labels"].shape[1] <= 2
    full = tokenizer(dm.eval_rows("mnli")[0]["input_text"])["input_ids"]
    assert len(full) > 8


def test_local_folder_and_in_memory_dataset_give_identical_batches(tokenizer):
    cfg = demo_config(k=6, eval_max_samples=12)
    raw = {}
    for name in ("rte", "stsb"):
        task = get_task(name)
        raw[name] = {
            split: datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]})
            for split in (task.train_split, task.eval_split)
            for rows in [read_jsonl(bundled_demo_dir() / name / f"{split}.jsonl")]
        }
    a = ComptDataModule(["rte", "stsb"], tokenizer, cfg)
    b = ComptDataModule(
        ["rte", "stsb"], tokenizer, DataConfig(**{**cfg.__dict__, "source": "hub"}), raw_splits=raw
    )
    for loader_a, loader_b in [
        (a.train_dataloader(), b.train_dataloader()),
        *zip(a.test_dataloader(), b.test_dataloader()),
    ]:
        batches_a, batches_b = list(loader_a), list(loader_b)
        assert len(batches_a) == len(batches_b) > 0
        for x, y in zip(batches_a, batches_b):
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_encoding_is_cached_across_runs_and_covers_only_selected_rows(tokenizer):
    ComptDataModule(["sst2"], tokenizer, demo_config(seed=1, k=4)).setup()
    before = len(_MEMO)
    ComptDataModule(["sst2"], tokenizer, demo_config(seed=1, k=4)).setup()
    assert len(_MEMO) == before  # the same run again: nothing re-encoded
    ComptDataModule(["sst2"], tokenizer, demo_config(seed=2, k=4)).setup()
    assert len(_MEMO) == before + 1  # a new seed: only its k-shot rows; the evaluation subset is shared
    new = list(_MEMO.values())[-1]
    assert len(new) == 4  # 4 of the split's 64 rows were tokenised, not the whole split
    ComptDataModule(["sst2"], tokenizer, demo_config(seed=2, k=4, max_source_length=9)).setup()
    assert len(_MEMO) == before + 3  # new lengths: train and eval rows re-encoded


# ------------------------------------------------------------------------------------ errors
def _copy_task(tmp_path: Path, name: str) -> Path:
    shutil.copytree(bundled_demo_dir() / name, tmp_path / name)
    return tmp_path / name


def test_unknown_task_error(tokenizer):
    with pytest.raises(ValueError, match="unknown task 'nope'.*rte"):
        ComptDataModule(["nope"], tokenizer, demo_config())


def test_missing_column_error(tmp_path, tokenizer):
    folder = _copy_task(tmp_path, "rte")
    rows = [{k: v for k, v in r.items() if k != "sentence2"} for r in read_jsonl(folder / "train.jsonl")]
    write_jsonl(folder / "train.jsonl", rows)
    with pytest.raises(DataError, match=r"rte/train .*missing column\(s\) \['sentence2'\]"):
        ComptDataModule(["rte"], tokenizer, demo_config(dir=str(tmp_path))).setup()


def test_label_outside_task_labels_error(tmp_path, tokenizer):
    folder = _copy_task(tmp_path, "sst2")
    rows = read_jsonl(folder / "validation.jsonl")
    rows[3]["label"] = 5
    write_jsonl(folder / "validation.jsonl", rows)
    with pytest.raises(
        DataError, match=r"sst2/validation .*1 row\(s\) with a label outside .*5 \(1 rows\).*0\.\.1"
    ):
        ComptDataModule(["sst2"], tokenizer, demo_config(dir=str(tmp_path))).setup()


def test_empty_split_error(tmp_path, tokenizer):
    folder = _copy_task(tmp_path, "rte")
    datasets.Dataset.from_dict({"sentence1": [], "sentence2": [], "label": [], "idx": []}).to_parquet(
        str(folder / "validation.parquet")
    )
    (folder / "validation.jsonl").unlink()
    with pytest.raises(DataError, match="rte/validation .*the split is empty"):
        ComptDataModule(["rte"], tokenizer, demo_config(dir=str(tmp_path))).setup()


def test_missing_file_error(tmp_path, tokenizer):
    with pytest.raises(DataError, match="no data for task 'rte' split 'train'.*compt data snapshot"):
        ComptDataModule(["rte"], tokenizer, demo_config(dir=str(tmp_path))).setup()


def test_hub_unreachable_error(tokenizer):
    tasks = {"rte": {"hub_path": "compt-tests/no-such-dataset"}}
    with pytest.raises(DataSourceError) as info:
        ComptDataModule(tasks, tokenizer, DataConfig(source="hub")).setup()
    message = str(info.value)
    assert "compt data snapshot" in message and "data.source=local data.dir=" in message


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"source": "web"}, "source"),
        ({"k": 0}, "k"),
        ({"temperature": 0.0}, "temperature"),
        ({"eval_max_samples": -2}, "eval_max_samples"),
        ({"batch_size": "20"}, "batch_size"),
        ({"epoch_size": 0}, "epoch_size"),
        ({"kshot_balanced": "yes"}, "kshot_balanced"),
    ],
)
def test_data_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"DataConfig.{field} "):
        DataConfig(**kwargs)


def test_data_config_from_dict_rejects_unknown_keys():
    assert DataConfig.from_dict({"k": 32}).k == 32
    with pytest.raises(ValueError, match="unknown data option"):
        DataConfig.from_dict({"kk": 32})


# ------------------------------------------------------------------------------------ real rows
@pytest.mark.real_data
def test_real_glue_rows_through_the_local_source(tokenizer):
    if not GLUE_REAL.is_dir():
        pytest.skip("real GLUE rows absent")
    cfg = DataConfig(source="local", dir=str(GLUE_REAL), k=16, kshot_balanced=True, eval_max_samples=50)
    dm = ComptDataModule(["rte", "stsb", "mnli", "imdb"], tokenizer, cfg)
    assert dm.train_sizes() == {"rte": 32, "stsb": 16, "mnli": 48, "imdb": 32}
    rows = dm.eval_rows("rte")
    assert len(rows) == 50 and rows[0]["input_text"].startswith("rte: sentence1: ")
    assert {r["target_text"] for r in rows} == {"entailment", "not_entailment"}
    assert all(r["target_text"] in get_task("stsb").candidates() for r in dm.eval_rows("stsb"))
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 20
