"""The task kinds beyond fixed labels: per-row answer choices (copa, record), answers scored as text (squad, the
MRQA sets) and the rest of SuperGLUE, on small rows written here in each hub dataset's column layout."""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter

import datasets
import pytest
import torch

from compt.data.encode import Collator, answer_columns, pad_choices
from compt.data.folder import inspect_folder
from compt.data.sampling import eval_indices
from compt.data.sources import load_split
from compt.errors import ConfigError, TaskError
from compt.evaluation import Predictor, TaskMetrics
from compt.models.family import build_model
from compt.models.tokenization import encode_inputs, encode_targets
from compt.prompts import PromptBank, PromptBankConfig
from compt.tasks import TASK_SETS, TaskSpec, get_task

# ------------------------------------------------------------------------------------ rows in the hub schemas
BOOLQ = {"question": "is the sky blue", "passage": "The sky is blue.", "idx": 0, "label": 1}
CB = {"premise": "It rains.", "hypothesis": "It is dry.", "idx": 3, "label": 1}
COPA = {
    "premise": "The man broke his toe.",
    "choice1": "He dropped a hammer on his foot.",
    "choice2": "He got a hole in his sock.",
    "question": "cause",
    "idx": 0,
    "label": 0,
}
MULTIRC = {
    "paragraph": "<b>Sent 1: </b>Tom ran.<br><b>Sent 2: </b>He won.",
    "question": "Who won?",
    "answer": "Tom",
    "idx": {"paragraph": 0, "question": 1, "answer": 2},
    "label": 1,
}
RECORD = {
    "passage": "Obama met Merkel in Berlin.\n@highlight\nThe two leaders talked\n@highlight\nTrade was discussed",
    "query": "@placeholder said the talks went well.",
    "entities": ["Obama", "Merkel", "Berlin"],
    "entity_spans": {"text": ["Obama", "Merkel", "Berlin"], "start": [0, 10, 20], "end": [5, 16, 26]},
    "answers": ["Merkel"],
    "idx": {"passage": 4, "query": 7},
}
WIC = {
    "word": "bank",
    "sentence1": "He sat on the bank.",
    "sentence2": "The bank lent money.",
    "start1": 14,
    "start2": 4,
    "end1": 18,
    "end2": 8,
    "idx": 0,
    "label": 0,
}
WSC = {
    "text": "Mark told Pete many lies about himself , which Pete included in his book .",
    "span1_index": 0,
    "span2_index": 12,
    "span1_text": "Mark",
    "span2_text": "his",
    "idx": 0,
    "label": 0,
}
SQUAD = {
    "id": "5733be284776f41900661182",
    "title": "University_of_Notre_Dame",
    "context": "Architecturally, the school has a Catholic character.",
    "question": "What character does the school have?",
    "answers": {"text": ["a Catholic character", "Catholic"], "answer_start": [32, 34]},
}
MRQA = {
    "subset": "NewsQA",
    "context": "The storm hit Miami on Monday.",
    "context_tokens": {"tokens": ["The", "storm"], "offsets": [0, 4]},
    "qid": "q1",
    "question": "Where did the storm hit?",
    "question_tokens": {"tokens": ["Where"], "offsets": [0]},
    "detected_answers": {
        "text": ["Miami"],
        "char_spans": [{"start": [14], "end": [18]}],
        "token_spans": [{"start": [3], "end": [3]}],
    },
    "answers": ["Miami"],
}

FORMATS = [
    ("boolq", BOOLQ, "boolq: question: is the sky blue passage: The sky is blue.", "True", 1.0),
    ("cb", CB, "cb: premise: It rains. hypothesis: It is dry.", "contradiction", 1.0),
    (
        "copa",
        COPA,
        "copa: premise: The man broke his toe. question: cause choice1: He dropped a hammer on his foot. "
        "choice2: He got a hole in his sock.",
        "He dropped a hammer on his foot.",
        0.0,
    ),
    (
        "multirc",
        MULTIRC,
        "multirc: question: Who won? answer: Tom paragraph: Sent 1: Tom ran. Sent 2: He won.",
        "True",
        1.0,
    ),
    (
        "record",
        RECORD,
        "record: query: @placeholder said the talks went well. entities: Obama, Merkel, Berlin passage: Obama met "
        "Merkel in Berlin. The two leaders talked. Trade was discussed",
        "Merkel",
        math.nan,
    ),
    (
        "wic",
        WIC,
        "wic: sentence1: He sat on the bank. sentence2: The bank lent money. word: bank",
        "False",
        0.0,
    ),
    (
        "wsc",
        WSC,
        "wsc: text: * Mark * told Pete many lies about himself , which Pete included in # his # book .",
        "False",
        0.0,
    ),
    (
        "squad",
        SQUAD,
        "squad: question: What character does the school have? context: Architecturally, the school has a "
        "Catholic character.",
        "a Catholic character",
        math.nan,
    ),
    (
        "newsqa",
        MRQA,
        "newsqa: question: Where did the storm hit? context: The storm hit Miami on Monday.",
        "Miami",
        math.nan,
    ),
]


@pytest.mark.parametrize(("name", "row", "text", "target", "gold"), FORMATS, ids=[f[0] for f in FORMATS])
def test_each_new_task_formats_a_hub_row(name, row, text, target, gold):
    task = get_task(name)
    assert set(task.required_columns) <= set(row)
    assert task.format_input(row) == text
    assert task.format_target(row) == target
    assert task.gold(row) == pytest.approx(gold, nan_ok=True)


MRQA_SETS = ("mrqa_squad", "newsqa", "triviaqa", "searchqa", "hotpotqa", "nq")
#: the built-in tasks whose formatting is tested here
FORMATTED = {name for name, *_ in FORMATS} | set(MRQA_SETS)


@pytest.mark.parametrize("name", MRQA_SETS)
def test_every_mrqa_set_reads_the_mrqa_layout(name):
    task = get_task(name)
    assert (
        task.format_input(MRQA)
        == f"{name}: question: Where did the storm hit? context: The storm hit Miami on Monday."
    )
    assert task.gold_answers(MRQA) == ["Miami"] and task.hub_path == "mrqa-workshop/mrqa"
    assert set(task.row_filter) == {"subset"}


def test_gold_answers_and_groups_in_each_layout():
    assert get_task("squad").gold_answers(SQUAD) == ["a Catholic character", "Catholic"]  # SQuAD's dict
    assert get_task("newsqa").gold_answers(MRQA) == ["Miami"]  # MRQA's list
    assert get_task("record").gold_answers(RECORD) == ["Merkel"]
    assert get_task("record").row_choices(RECORD) == ["Obama", "Merkel", "Berlin"]
    assert get_task("copa").gold_answers(COPA) == [COPA["choice1"]]
    assert get_task("multirc").group_key(MULTIRC) == "0/1"
    with pytest.raises(TaskError, match="no gold answer"):
        get_task("squad").gold_answers({**SQUAD, "answers": {"text": [], "answer_start": []}})
    with pytest.raises(TaskError, match="outside"):
        get_task("copa").label_id({**COPA, "label": 2})


def test_generated_answers_are_read_against_the_rows_choices():
    copa, record, squad, boolq = (get_task(n) for n in ("copa", "record", "squad", "boolq"))
    choices = copa.row_choices(COPA)
    assert copa.parse("he got a hole in his sock", choices) == 1.0  # case and the full stop aside
    assert copa.parse("He dropped a hammer", choices) is None  # not a choice
    assert record.parse("merkel", record.row_choices(RECORD)) == 1.0
    assert record.parse("Paris", record.row_choices(RECORD)) is None
    assert squad.parse("anything at all") is None and not squad.has_candidates  # text: no value, always valid
    assert boolq.parse("True") == 1.0 and boolq.parse("yes") is None


def test_task_sets_and_kinds():
    assert TASK_SETS["superglue"] == ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]
    assert TASK_SETS["mrqa"] == ["mrqa_squad", "newsqa", "triviaqa", "searchqa", "hotpotqa", "nq"]
    kinds = {n: get_task(n).kind for n in ("boolq", "copa", "record", "squad", "stsb")}
    assert kinds == {
        "boolq": "classification",
        "copa": "choice",
        "record": "text",
        "squad": "text",
        "stsb": "regression",
    }
    # the paper reading each benchmark reports: MultiRC F1a, MRQA/SQuAD F1, accuracy elsewhere
    assert {n: get_task(n).compat_metric for n in ("multirc", "nq", "squad", "cb", "copa", "record")} == {
        "multirc": "f1a",
        "nq": "f1",
        "squad": "f1",
        "cb": "accuracy",
        "copa": "accuracy",
        "record": "f1",
    }
    assert get_task("squad").max_source_length == 512 and get_task("copa").max_new_tokens == 32


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"template": "{q}", "answers_column": "a", "label_words": ["x", "y"]}, "exactly one"),
        ({"template": "{q}", "answers_column": "a", "metrics": ["accuracy"]}, "do not fit a text task"),
        ({"template": "{q}", "regression_grid": 0.5, "metrics": ["f1"]}, "do not fit a regression task"),
        ({"template": "{q}", "label_words": ["n", "y"], "metrics": ["em"]}, "needs `group_columns`"),
        ({"template": "{q}", "choices": ["a", "b"], "preprocess": "nope"}, "preprocess"),
        ({"template": "{q}", "answers_column": "a", "max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_definitions_of_the_new_kinds_fail_with_one_line(definition, message):
    with pytest.raises(TaskError, match=message):
        TaskSpec.from_dict("mine", {"hub_path": "x/y", **definition})


# ------------------------------------------------------------------------------------ metrics
def official_normalize(text: str) -> str:
    """The SQuAD v1.1 evaluation script's ``normalize_answer``, written from its definition."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def official_f1(prediction: str, gold: str) -> float:
    pred, ref = official_normalize(prediction).split(), official_normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def official_squad(predictions: list[str], answers: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 in percent, each the max over a row's gold answers (the official script)."""
    em = [
        max(float(official_normalize(p) == official_normalize(g)) for g in gold)
        for p, gold in zip(predictions, answers)
    ]
    f1 = [max(official_f1(p, g) for g in gold) for p, gold in zip(predictions, answers)]
    return {"em": 100 * sum(em) / len(em), "f1": 100 * sum(f1) / len(f1)}


def test_text_answers_score_as_the_official_squad_definitions():
    predictions = ["The Catholic character!", "Miami, Florida", "", "an  apple"]
    answers = [["a Catholic character", "Catholic"], ["Miami"], ["x"], ["Apple", "pear"]]
    metrics = TaskMetrics([get_task("squad")])
    nan = torch.full((4,), math.nan)
    metrics.update(0, nan, nan, valid=torch.ones(4, dtype=torch.bool), texts=predictions, answers=answers)
    result = metrics.compute()
    expected = official_squad(predictions, answers)
    assert result["tasks"]["squad"] == pytest.approx(expected, abs=1e-4)
    assert result["primary"]["squad"] == result["tasks"]["squad"]["f1"] and result["invalid"]["squad"] == 0


def test_record_scores_the_named_choice_and_multirc_groups_questions():
    metrics = TaskMetrics([get_task("record"), get_task("multirc"), get_task("copa")])
    choices = [["Obama", "Merkel"], ["Paris", "Rome", "Oslo"]]
    # row 0 names Merkel (right); row 1 had no valid answer (scored as the empty answer, counted invalid)
    metrics.update(
        0,
        torch.tensor([1.0, math.nan]),
        torch.full((2,), math.nan),
        texts=["merkel", "Lyon"],
        answers=[["Merkel"], ["Rome"]],
        choices=choices,
    )
    # question 5: one of its two answers wrong; question 7: both right
    metrics.update(
        1,
        torch.tensor([1.0, 1.0, 0.0, 1.0]),
        torch.tensor([1.0, 0.0, 0.0, 1.0]),
        groups=torch.tensor([5, 5, 7, 7]),
    )
    metrics.update(2, torch.tensor([1.0, 0.0, math.nan]), torch.tensor([1.0, 1.0, 0.0]))  # copa: 1 of 3 right
    result = metrics.compute()
    assert result["tasks"]["record"] == pytest.approx({"f1": 50.0, "em": 50.0})
    assert result["tasks"]["multirc"] == pytest.approx({"f1a": 80.0, "em": 50.0})  # P 2/3, R 1
    assert result["tasks"]["copa"]["accuracy"] == pytest.approx(100 / 3)
    assert result["invalid"] == {"record": 1, "multirc": 0, "copa": 1}


def test_grouped_evaluation_subsets_keep_questions_whole():
    groups = [f"q{i // 3}" for i in range(30)]  # 10 questions of 3 answers
    rows = eval_indices("multirc", 30, 7, 0, groups)
    chosen = Counter(groups[i] for i in rows)
    assert len(rows) >= 7 and set(chosen.values()) == {3}
    assert rows == eval_indices("multirc", 30, 7, 0, groups)  # seeded


# ------------------------------------------------------------------------------------ rank over each row's choices
@pytest.fixture(params=["tiny", "tiny-causal"])
def backbone(request, tiny_backbone, tiny_causal_backbone):
    return tiny_backbone if request.param == "tiny" else tiny_causal_backbone


def test_rank_scores_each_rows_own_choices_for_both_families(backbone):
    """A batch mixing a record row (3 entities), a copa row (2 choices), a boolq row (label words) and a squad
    row (no candidates: generated under rank): each ranked row's answer is the most likely of its own candidates,
    scored alone."""
    model_, tokenizer = backbone
    tasks = [get_task(n) for n in ("record", "copa", "boolq", "squad")]
    config = PromptBankConfig(
        method="ssum",
        task_names=[t.name for t in tasks],
        d_model=model_.config.hidden_size if hasattr(model_.config, "hidden_size") else model_.config.d_model,
    )
    bank = PromptBank(config, model_.get_input_embeddings().weight, torch.Generator().manual_seed(0))
    model = build_model(model_, bank, backbone_dropout=False).eval()
    rows = [RECORD, COPA, BOOLQ, SQUAD]
    examples = []
    for task_id, (task, row) in enumerate(zip(tasks, rows)):
        ids = encode_inputs(tokenizer, [task.format_input(row)], 256)[0]
        extra = answer_columns(task, [row], tokenizer)
        examples.append(
            {"input_ids": ids, "labels": [1], "task_id": task_id} | {k: v[0] for k, v in extra.items()}
        )
    batch = Collator(tokenizer.pad_token_id or 0)(examples)
    assert batch["choice_labels"].shape[:2] == (4, 3)  # the most choices of a row; fewer are -100 rows
    predictor = Predictor(tasks, tokenizer, "rank", max_new_tokens=4)
    predictions = predictor(model, batch)
    assert predictions.texts[0] in RECORD["entities"] and predictions.texts[1] in (
        COPA["choice1"],
        COPA["choice2"],
    )
    assert predictions.texts[2] in ("False", "True") and predictions.valid.tolist() == [True] * 4
    for row, options in ((0, RECORD["entities"]), (1, [COPA["choice1"], COPA["choice2"]])):
        single = Collator(tokenizer.pad_token_id or 0)([examples[row]])
        alone = [  # every candidate scored by itself
            model.score_candidates(
                single["input_ids"],
                single["attention_mask"],
                single["task_ids"],
                pad_choices([encode_targets(tokenizer, [option])]),
            ).item()
            for option in options
        ]
        assert predictions.texts[row] == options[max(range(len(options)), key=alone.__getitem__)]
        assert predictions.values[row].item() == float(options.index(predictions.texts[row]))


def test_generation_of_a_choice_task_always_answers_one_of_the_rows_choices(tiny_backbone):
    """Untrained prompts make the tiny T5 copy words: a generated copa answer names no choice, so the predictor
    takes the choice rank classification picks (and counts the row invalid); a squad answer stays free text."""
    backbone_, tokenizer = tiny_backbone
    tasks = [get_task("copa"), get_task("squad")]
    config = PromptBankConfig(method="pt", task_names=["copa", "squad"], d_model=backbone_.config.d_model)
    model = build_model(
        backbone_, PromptBank(config, backbone_.get_input_embeddings().weight), backbone_dropout=False
    ).eval()
    examples = []
    for task_id, (task, row) in enumerate(zip(tasks, (COPA, SQUAD))):
        ids = encode_inputs(tokenizer, [task.format_input(row)], 256)[0]
        extra = answer_columns(task, [row], tokenizer)
        examples.append(
            {"input_ids": ids, "labels": [1], "task_id": task_id} | {k: v[0] for k, v in extra.items()}
        )
    batch = Collator(tokenizer.pad_token_id)(examples)
    generated = Predictor(tasks, tokenizer, "generate", max_new_tokens=8)(model, batch)
    ranked = Predictor(tasks, tokenizer, "rank", max_new_tokens=8)(model, batch)
    assert generated.texts[0] in (COPA["choice1"], COPA["choice2"]) and ranked.texts[0] in (
        COPA["choice1"],
        COPA["choice2"],
    )
    if not generated.valid[0]:  # replaced: the raw generation is kept
        assert generated.generated[0] and generated.texts[0] == ranked.texts[0]
    assert generated.valid[1] and generated.texts[1] == ranked.texts[1]  # squad: generated in both modes


# ------------------------------------------------------------------------------------ local folders and data check
def _write(folder, task: str, split: str, rows: list[dict]) -> None:
    path = folder / task
    path.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path / f"{split}.parquet"))


def test_data_check_validates_answers_choices_and_contexts(tmp_path):
    _write(
        tmp_path,
        "squad",
        "train",
        [SQUAD, {**SQUAD, "answers": {"text": ["a Protestant one"], "answer_start": [0]}}],
    )
    _write(tmp_path, "squad", "validation", [SQUAD])
    _write(tmp_path, "copa", "train", [COPA, {**COPA, "label": 2}])
    _write(tmp_path, "copa", "validation", [COPA])
    _write(tmp_path, "record", "train", [RECORD, {**RECORD, "entities": [], "answers": []}])
    _write(tmp_path, "record", "validation", [RECORD])
    problems, warnings = inspect_folder(tmp_path, [get_task(n) for n in ("squad", "copa", "record")])
    assert len(problems) == 3, problems  # one line per split and kind of problem, naming the rows
    assert (
        "copa/train" in problems[0]
        and "not the index of one of the row's choices (column 'label') in 1 row(s): 1" in problems[0]
    )
    assert all("record/train" in p for p in problems[1:])
    assert "no answer choices" in problems[1] and "no gold answer text" in problems[2]
    repeated = [w.split(" ")[0] for w in warnings if "repeat the input of an earlier row" in w]
    assert repeated == [
        "squad/train",
        "copa/train",
        "record/train",
    ]  # record: compared without its entity list
    warnings = [w for w in warnings if "repeat the input" not in w]
    assert len(warnings) == 1 and "squad/train" in warnings[0]
    assert "not in column 'context' in 1 row(s): 1" in warnings[0]


def test_mrqa_sets_read_their_subset_from_one_hub_layout(tmp_path):
    rows = [MRQA, {**MRQA, "subset": "SearchQA", "qid": "q2"}, {**MRQA, "qid": "q3"}]
    _write(tmp_path, "newsqa", "validation", rows)
    loaded = load_split(get_task("newsqa"), "validation", "local", tmp_path)
    assert loaded["qid"] == ["q1", "q3"]


def test_restore_best_needs_a_development_split():
    from compt.config.schema import TrainSchema
    from compt.jobs.preflight import check_run_config
    from tests.test_configs import composed

    check_run_config(
        TrainSchema.from_hydra(
            composed("experiment=demo_qa", "callbacks.restore_best=true", "data.validation_from_train=4")
        )
    )
    with pytest.raises(ConfigError, match="data.validation_from_train"):
        check_run_config(
            TrainSchema.from_hydra(composed("experiment=demo_qa", "callbacks.restore_best=true"))
        )


@pytest.mark.parametrize(
    ("name", "row", "kind"),
    [
        (
            "faq_qa",
            {
                "id": "1",
                "context": "Open at 9.",
                "question": "When?",
                "answers": {"text": ["9"], "answer_start": [8]},
            },
            "text",
        ),
        (
            "pick_ending",
            {
                "context": "He sat",
                "ending0": "down",
                "ending1": "up",
                "ending2": "in",
                "ending3": "on",
                "label": 0,
            },
            "choice",
        ),
    ],
)
def test_the_user_tasks_of_docs_tasks_md_are_valid(name, row, kind):
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith(f"{name}:"))
    task = TaskSpec.from_dict(name, yaml.safe_load(block)[name])
    assert task.kind == kind and task.format_target(row) in ("9", "down")
    assert task.gold_answers(row)[0] == task.format_target(row)


@pytest.mark.slow
def test_text_and_question_metrics_gather_every_ranks_rows(tmp_path):
    """Under DDP each rank scores its shard; the metrics and counts cover both (torchmetrics' sync)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "rank0.json"
    from tests.ddp_metrics import metrics_on_rank

    # forked from this process (torch and the metrics already imported), not spawned: two fresh interpreters
    # would spend seconds each importing them again
    torch.multiprocessing.start_processes(
        metrics_on_rank, args=(port, str(out)), nprocs=2, join=True, start_method="fork"
    )
    result = json.loads(out.read_text())
    assert result["counts"] == {"squad": 3, "multirc": 3}
    assert result["tasks"]["squad"] == pytest.approx({"em": 200 / 3, "f1": 200 / 3}, abs=1e-4)
    assert result["tasks"]["multirc"]["em"] == pytest.approx(50.0)  # question 7 right, question 5 wrong


def test_restore_best_keeps_and_restores_the_best_validations_bank():
    """The bank of the highest val/avg (not the last) comes back, and the choice survives a checkpoint round
    trip (resume)."""
    from types import SimpleNamespace

    from compt.training.callbacks import BestBank

    bank = torch.nn.Linear(2, 2)
    module = SimpleNamespace(bank=bank)
    best, snapshots = BestBank(), {}
    for step, score in ((10, 40.0), (20, 55.0), (30, 50.0)):
        with torch.no_grad():
            bank.weight.fill_(step)
        snapshots[step] = bank.weight.clone()
        trainer = SimpleNamespace(
            sanity_checking=False, global_step=step, callback_metrics={"val/avg": torch.tensor(score)}
        )
        best.on_validation_end(trainer, module)
    resumed = BestBank()
    resumed.load_state_dict(best.state_dict())
    assert resumed.restore(module) == {"global_step": 20, "val_avg": 55.0}
    assert torch.equal(bank.weight, snapshots[20])
    assert BestBank().restore(module) is None  # no validation ran: the last model stays


def test_compt_predict_reads_choices_and_entity_lists_and_refuses_rows_without_choices(tmp_path):
    """``compt predict`` checks its input chunk by chunk before the backbone loads: a copa row without choices is
    refused (row numbers counted across chunks), record's entity list is an input, not a problem."""
    from compt.errors import InferenceError
    from compt.inference.rows import check_input

    record = tmp_path / "record.jsonl"
    record.write_text("\n".join(json.dumps(RECORD) for _ in range(3)) + "\n")
    assert check_input(record, get_task("record")) == 3
    copa = tmp_path / "copa.jsonl"
    rows = [COPA] * 1030 + [{k: v for k, v in COPA.items() if k != "choice2"}]  # a second chunk's row
    copa.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(
        InferenceError,
        match=r"no answer choices \(column\(s\) \['choice1', 'choice2'\]\) in 1 row\(s\): 1030 ",
    ):
        check_input(copa, get_task("copa"))
