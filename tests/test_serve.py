"""Every task of a bank from one backbone: ``compt predict`` with mixed rows, the batching and the requests of
``compt serve``, and ``compt export --format embeds``. The server itself runs against trained runs of both
families (a real process on 127.0.0.1, a real client, bounded loops: :mod:`tests.serving`) in
``test_predict_export.py`` (T5) and ``test_causal.py`` (the causal demo), beside the runs they already train."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from compt import PromptBank, PromptBankConfig
from compt.cli import main
from compt.errors import ExportError, InferenceError
from compt.inference import composed_prompt, export_embeds, load_for_inference
from compt.inference.predictor import RowEncoder
from compt.inference.rows import check_rows
from compt.models.backbone import load_backbone
from compt.models.family import build_model
from compt.models.tokenization import encode_inputs, input_encoder
from compt.serving.batching import MicroBatcher, QueueFull, in_thread
from compt.serving.requests import RequestError, parse_body
from compt.tasks import get_task
from tests.serving import TASKS, demo_rows

D = 64  # both tiny backbones' width


def fresh_run(folder: Path, backbone: str, tasks: list[str] = TASKS) -> Path:
    """A freshly initialised bank of ``tasks`` (default the demo's) for a bundled backbone, saved as a run's
    ``bank/``."""
    config = PromptBankConfig(method="ssum", task_names=tasks, d_model=D, backbone=backbone)
    PromptBank(config, generator=torch.Generator().manual_seed(0)).save(folder / "bank")
    return folder / "bank"


# ---------------------------------------------------------------------------------------------- predict
@pytest.mark.parametrize("backbone", ["tiny", "tiny-causal"])
def test_a_mixed_batch_answers_each_row_as_it_would_alone(tmp_path, backbone):
    """One backbone pass over rows of four tasks (2 to 26 rank candidates each, several input lengths) gives
    every row the answer it gets in a batch of its own, in both modes, in the input's order."""
    predictor = load_for_inference(fresh_run(tmp_path, backbone), device="cpu")
    rows = demo_rows(2)
    for mode in ("rank", "generate"):
        mixed = predictor.predict(rows, mode=mode)
        alone = [predictor.predict([row], row["task"], mode=mode)[0] for row in rows]
        assert [m["index"] for m in mixed] == list(range(len(rows)))
        assert [m["task"] for m in mixed] == [row["task"] for row in rows]
        assert [{**a, "index": i} for i, a in enumerate(alone)] == mixed


def test_a_mixed_batch_of_per_row_choices_and_text_answers_answers_each_row_as_alone(tmp_path):
    """Rows with their own choices (copa), answered by text (squad: generated under rank too, 32 new tokens
    where sst2 gets the run's 10) and by 26 candidates (stsb) in one batch: each gets the answer, choices and
    gold fields it gets alone, in both modes."""
    tasks = ["sst2", "copa", "squad", "stsb"]
    predictor = load_for_inference(fresh_run(tmp_path, "tiny", tasks), device="cpu")
    rows = demo_rows(2, tasks)
    for mode in ("rank", "generate"):
        mixed = predictor.predict(rows, mode=mode)
        alone = [predictor.predict([row], row["task"], mode=mode)[0] for row in rows]
        assert [{**a, "index": i} for i, a in enumerate(alone)] == mixed, mode
        copa = [m for m in mixed if m["task"] == "copa"]
        assert all(m["prediction"] in m["input"] and m["answers"] for m in copa)
        assert all("answers" in m and "gold" not in m for m in mixed if m["task"] == "squad")
    with pytest.raises(InferenceError, match=r"'choice2' has no text .* in 1 row\(s\): 1 .*task 'copa'"):
        predictor.predict([rows[0], {**rows[1], "choice2": None}])


@pytest.mark.parametrize("backbone", ["tiny", "tiny-causal"])
def test_rows_encoded_one_at_a_time_get_the_ids_of_a_batch_call(backbone):
    """The server's per-row encoder (the Rust tokenizer called directly) gives :func:`encode_inputs`' ids, and
    a long row is cut as training cuts it, even after the tokenizer truncated in a batch call."""
    _, tokenizer = load_backbone(backbone)
    texts = [r["sentence"] for r in demo_rows(8, ["sst2"])] + [
        "",
        " ",
        "Ünïcödé — naïve café",
        "a </s> b <pad>",
    ]
    encode = input_encoder(tokenizer)
    assert [encode(t) for t in texts] == encode_inputs(tokenizer, texts)
    encode_inputs(tokenizer, ["word " * 50], 8)  # leaves truncation set on transformers' backend
    assert len(encode("word " * 50)) > 50
    encoder = RowEncoder(tokenizer, [get_task("sst2")], 8)
    [row] = encoder.prepare([{"sentence": "word " * 50}], ["sst2"])
    assert row.input_ids == encode_inputs(tokenizer, ["sst2: sentence: " + "word " * 50], 8)[0]
    assert len(row.input_ids) == 8 and row.length > 50


def test_mixed_rows_are_refused_naming_the_rows_and_the_banks_tasks():
    tasks = [get_task(name) for name in TASKS]
    rows = [{"task": "sst2", "sentence": "fine"}, {"task": "cola", "sentence": "x"}, {"sentence": "no task"}]
    with pytest.raises(InferenceError) as refused:
        check_rows(tasks, rows, "rows.jsonl")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("rows.jsonl: ")
    assert "1 row(s): 1 (numbered from 0) are of task 'cola', which this bank lacks" in message
    assert "its tasks are: sst2, rte, mnli, stsb" in message
    assert "1 row(s): 2 (numbered from 0) have no 'task'" in message and "pass --task" in message
    with pytest.raises(InferenceError, match=r"'sentence2' has no text .* in 1 row\(s\): 1 .*task 'rte'"):
        check_rows(tasks, [{"task": "sst2", "sentence": "a"}, {"task": "rte", "sentence1": "b"}], "rows")
    with pytest.raises(InferenceError, match="name another task than 'rte'"):
        check_rows(tasks, [{"task": "sst2", "sentence1": "a", "sentence2": "b"}], "rows", task="rte")
    check_rows(tasks, [{"task": "rte", "sentence1": "a", "sentence2": "b"}], "rows", task="rte")


def test_compt_predict_refuses_a_row_of_a_task_the_bank_lacks_before_predicting(tmp_path, capsys):
    bank = fresh_run(tmp_path, "tiny")
    source = tmp_path / "rows.jsonl"
    source.write_text(
        "".join(json.dumps(r) + "\n" for r in [*demo_rows(1), {"task": "qqp", "question1": "?"}])
    )
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--bank", str(bank), "--input", str(source), "--output", str(out)]) == 2
    assert "1 row(s): 4 (numbered from 0) are of task 'qqp'" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- batching
def test_the_batcher_batches_concurrent_requests_by_key_up_to_its_size_and_keeps_each_requests_order():
    seen: list[tuple[str, list[int]]] = []

    def run(key, items):
        seen.append((key, items))
        return [(key, item * 10) for item in items]

    async def scenario():
        batcher = MicroBatcher(in_thread(run), max_batch_size=4, max_wait_s=0.05)
        batcher.start()
        requests = [("a", [1, 2]), ("b", [3]), ("a", [4, 5, 6]), ("a", [7]), ("b", [8, 9])]
        answers = await asyncio.gather(*(batcher.submit(key, items) for key, items in requests))
        await batcher.stop()
        return requests, answers

    requests, answers = asyncio.run(scenario())
    for (key, items), answer in zip(requests, answers):
        assert answer == [(key, item * 10) for item in items]
    assert all(len(items) <= 4 for _, items in seen)
    assert sorted(len(items) for key, items in seen if key == "a") == [2, 4]  # 6 rows of key a: 4, then 2
    assert [items for key, items in seen if key == "b"] == [[3, 8, 9]]  # arrived together: one batch


SHAPES = {"a": (10, 2, 2), "b": (30, 2, 2), "c": (20, 26, 4), "x": (5, 2, 2)}
"""rows of four shapes: short inputs, long inputs, 26 longer candidates, and the blocker ``x``"""


def batches_while_busy(rows: list[str], max_batch_size: int, with_shape: bool = True) -> list[list[str]]:
    """The batches ``rows`` (named by their :data:`SHAPES` letter) go in when they arrive, one request each,
    while a first batch runs; each request gets its own row back."""
    seen: list[list[str]] = []
    release = threading.Event()

    def run(key, items):
        seen.append(items)
        release.wait(10)
        return items

    async def scenario():
        shape = (lambda item: SHAPES[item[0]]) if with_shape else None
        batcher = MicroBatcher(in_thread(run), max_batch_size, 0.0, shape=shape)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit("k", ["x0"]))
        while not seen:
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(batcher.submit("k", [row])) for row in rows]
        await asyncio.sleep(0.01)
        release.set()
        answers = await asyncio.gather(first, *rest)
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert answers == [["x0"], *([row] for row in rows)]
    assert seen[0] == ["x0"] and sorted(r for batch in seen[1:] for r in batch) == sorted(rows)
    return seen[1:]


@pytest.mark.parametrize("with_shape", [True, False])
def test_more_rows_than_a_batch_holds_are_batched_by_shape_the_oldest_first(with_shape):
    """Rows of three shapes (short inputs, long inputs, 26 longer candidates) wait, interleaved, while a batch
    runs: batches of 4 taken around the oldest row are each of one shape (without ``shape``: of all three)."""
    rows = [f"{kind}{i}" for i in range(4) for kind in "abc"]
    seen = batches_while_busy(rows, 4, with_shape)
    if with_shape:  # the oldest waiting row's shape first: a0, then b0, then c0
        assert seen == [[f"{kind}{i}" for i in range(4)] for kind in "abc"]
    else:
        assert seen == [rows[:4], rows[4:8], rows[8:]]


def test_rows_with_candidates_of_another_length_only_fill_a_batch():
    """A batch of 4 holds 2-token-candidate rows (a) and 4-token ones (c) together only when fewer than half a
    batch of the oldest row's kind wait."""
    assert batches_while_busy(["a0", "c0", "a1", "c1"], 4) == [["a0", "a1"], ["c0", "c1"]]
    assert batches_while_busy(["a0", "c0", "c1", "c2"], 4) == [["a0", "c0", "c1", "c2"]]
    assert batches_while_busy(["c0", "a0", "b0", "a1"], 4) == [["c0", "a0", "b0", "a1"]]


def test_a_failing_batch_fails_its_requests_only_and_a_full_queue_refuses():
    def run(key, items):
        if "bad" in items:
            raise RuntimeError("boom")
        return items

    async def scenario():
        batcher = MicroBatcher(in_thread(run), max_batch_size=8, max_wait_s=0.0, max_waiting=4)
        batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit("k", ["bad"])
        assert await batcher.submit("k", ["fine"]) == ["fine"]
        with pytest.raises(QueueFull):
            await batcher.submit("k", list(range(5)))
        await batcher.stop()

    asyncio.run(scenario())


def test_a_body_is_one_row_or_a_list_and_is_refused_with_one_line():
    tasks = [get_task(name) for name in TASKS]
    assert parse_body(b'{"task": "sst2", "sentence": "fine"}', tasks).single
    assert len(parse_body(json.dumps(demo_rows(1)).encode(), tasks).rows) == 4
    refusals = {
        b"{not json": (400, "not JSON"),
        b'"a string"': (400, "JSON str"),
        b"\xff\xfe": (400, "not UTF-8"),
        b"[]": (422, "empty list"),
        b'[{"task": "sst2", "sentence": "a"}, 3]': (400, "row(s) 1 are not"),
        b'{"task": "cola", "sentence": "a"}': (422, "its tasks are: sst2, rte, mnli, stsb"),
        b'{"task": "sst2", "sentence": null}': (422, "'sentence' has no text"),
        b'{"sentence": "a"}': (422, "have no 'task'"),
    }
    for body, (status, phrase) in refusals.items():
        with pytest.raises(RequestError) as refused:
            parse_body(body, tasks)
        assert refused.value.status == status and phrase in str(refused.value), body
        assert "\n" not in str(refused.value)


# ---------------------------------------------------------------------------------------------- export
def test_embeds_export_writes_every_task_and_mask_and_the_recipe_reproduces_compt(tmp_path, tiny_backbone):
    """The exported (L, d) prompt, placed as the file's layout says (T5, after: [text] [prompt] </s>), gives
    the backbone the logits compt's own model computes."""
    bank_dir = fresh_run(tmp_path, "tiny")
    out, written = export_embeds(bank_dir, tmp_path / "prompts.safetensors", masks=["all"])
    bank = PromptBank.load(bank_dir).eval()
    masks = ("src0", "src1", "src2", "all_src", "private", "total")
    assert written == [f"{t}/{m}" for t in TASKS for m in masks]
    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
        assert sorted(handle.keys()) == sorted(written)
        for name in written:
            task, mask = name.split("/")
            torch.testing.assert_close(handle.get_tensor(name), composed_prompt(bank, task, mask).prompt)
        prompt = handle.get_tensor("rte/total")
    assert meta["format"] == "compt-embeds" and meta["position"] == "after" and meta["family"] == "seq2seq"
    assert meta["layout"].startswith("encoder input: [text tokens] [prompt] </s>")
    backbone, tokenizer = tiny_backbone
    text = "rte: sentence1: a man is singing sentence2: a man sings"
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    embed = backbone.get_input_embeddings()
    target = tokenizer(["entailment"], return_tensors="pt").input_ids
    with torch.no_grad():
        recipe = torch.cat([embed(ids[:, :-1]), prompt[None], embed(ids[:, -1:])], 1)
        theirs = backbone(inputs_embeds=recipe, labels=target).logits
        model = build_model(backbone, bank, backbone_dropout=False).eval()
        embeds, attention = model.prompted_inputs(ids, torch.ones_like(ids), torch.tensor([1]))
        ours = backbone(inputs_embeds=embeds, attention_mask=attention, labels=target).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    with pytest.raises(ExportError, match="FILE.safetensors"):
        export_embeds(bank_dir, tmp_path / "prompts")
    with pytest.raises(ExportError, match="src7"):
        export_embeds(bank_dir, tmp_path / "x.safetensors", masks=["src7"])
    cli = [
        "export",
        "--bank",
        str(bank_dir),
        "--format",
        "embeds",
        "--out",
        str(tmp_path / "cli.safetensors"),
    ]
    assert main([*cli, "--task", "sst2", "--mask", "total,src1"]) == 0
    with safe_open(str(tmp_path / "cli.safetensors"), "pt") as handle:
        assert sorted(handle.keys()) == ["sst2/src1", "sst2/total"]
    assert main(["export", "--bank", str(bank_dir), "--out", str(tmp_path / "peft")]) == 2  # peft: one task


def test_the_embeds_layout_of_a_causal_bank_reproduces_compts_prefix(tmp_path, tiny_causal_backbone):
    """Causal, position=after: ``[BOS] [text tokens] [prompt]`` through the backbone gives compt's next-token
    logits (what its generation and rank scoring start from)."""
    bank_dir = fresh_run(tmp_path, "tiny-causal")
    out, _ = export_embeds(bank_dir, tmp_path / "prompts.safetensors", ["sst2"])
    with safe_open(str(out), "pt") as handle:
        meta, prompt = handle.metadata(), handle.get_tensor("sst2/total")
    assert meta["family"] == "causal" and meta["layout"].startswith("[BOS] [text tokens] [prompt]")
    backbone, tokenizer = tiny_causal_backbone
    ids = [
        tokenizer.bos_token_id,
        *tokenizer("sst2: sentence: a fine film", add_special_tokens=False).input_ids,
    ]
    model = build_model(backbone, PromptBank.load(bank_dir), backbone_dropout=False).eval()
    with torch.no_grad():
        text = backbone.get_input_embeddings()(torch.tensor(ids))
        theirs = backbone(inputs_embeds=torch.cat([text, prompt])[None]).logits[0, -1]
        tensor = torch.tensor([ids])
        embeds, attention = model.prompted_inputs(tensor, torch.ones_like(tensor), torch.tensor([0]))
        ours = backbone(inputs_embeds=embeds, attention_mask=attention).logits[0, -1]
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


def test_compt_serve_refuses_what_cannot_work_before_loading_anything(tmp_path, capsys):
    import socket

    bank = fresh_run(tmp_path, "tiny")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = [
            (["serve", str(tmp_path / "nothing")], "holds no prompt bank"),
            (["serve", str(bank), "--port", "70000"], "--port 70000"),
            (["serve", str(bank), "--max-batch-size", "0"], "--max-batch-size 0"),
            (["serve", str(bank), "--port", port], f"cannot listen on 127.0.0.1:{port}"),
        ]
        for argv, phrase in cases:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert phrase in err and err.count("\n") == 1, err


def test_a_dead_model_process_stops_the_server_with_one_line_naming_its_status(tmp_path):
    """The model's process killed outright (out of memory, say): the server does not hang or answer wrongly, it
    stops by itself with exit 2 and one line; the request it was answering gets a line, or no connection."""
    import os
    import signal

    from tests.serving import Server, is_running

    server = Server(fresh_run(tmp_path, "tiny"), tmp_path / "serve.log")
    try:
        model_pid = server.client.wait_ready(timeout=60)["model_pid"]
        row = demo_rows(1)[0]
        assert server.client.predict(row)["task"] == row["task"]
        os.kill(model_pid, signal.SIGKILL)
        try:
            server.client.predict(row)
        except RequestError as refused:
            assert refused.status in (500, 503) and "model's process exited" in str(refused), refused
        except InferenceError as err:  # the server had already stopped
            assert "cannot reach compt serve" in str(err)
        else:
            raise AssertionError("a dead model answered")
        assert server.proc.wait(timeout=60) == 2
    finally:
        if server.proc.poll() is None:
            server.stop()
    log = server.log.read_text()
    assert "\ncompt: the model's process exited (status -9); restart compt serve\n" in log, log[-2000:]
    assert "Traceback" not in log  # no bug: a line
    assert not is_running(model_pid)
