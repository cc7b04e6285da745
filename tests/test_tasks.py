"""Task registry: text formats of every built-in task, label parsing, task sets, Hydra composition."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from compt.tasks import BUILTIN_TASKS, TASK_SETS, TaskError, TaskSpec, get_task, resolve_tasks

CONF_TASKS = Path(__file__).resolve().parents[1] / "conf" / "tasks"

# task -> (a row in the hub schema, expected input text, expected target text)
HUB_ROWS = {
    "mnli": (
        {"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 0, "idx": 3},
        "mnli: sentence1: A dog runs. sentence2: An animal moves.",
        "entailment",
    ),
    "qnli": (
        {"question": "Who runs?", "sentence": "A dog runs.", "label": 1, "idx": 0},
        "qnli: question: Who runs? sentence: A dog runs.",
        "not_entailment",
    ),
    "rte": (
        {"sentence1": "A dog runs.", "sentence2": "A cat sleeps.", "label": 1, "idx": 0},
        "rte: sentence1: A dog runs. sentence2: A cat sleeps.",
        "not_entailment",
    ),
    "cola": (
        {"sentence": "Dog the runs.", "label": 0, "idx": 0},
        "cola: sentence: Dog the runs.",
        "unacceptable",
    ),
    "sst2": (
        {"sentence": "a lovely film", "label": 1, "idx": 0},
        "sst2: sentence: a lovely film",
        "positive",
    ),
    "stsb": (
        {"sentence1": "A dog runs.", "sentence2": "A dog is running.", "label": 3.77, "idx": 0},
        "stsb: sentence1: A dog runs. sentence2: A dog is running.",
        "3.8",
    ),
    "mrpc": (
        {"sentence1": "He left.", "sentence2": "He went away.", "label": 1, "idx": 0},
        "mrpc: sentence1: He left. sentence2: He went away.",
        "equivalent",
    ),
    "qqp": (
        {"question1": "Why run?", "question2": "Why sleep?", "label": 0, "idx": 0},
        "qqp: sentence1: Why run? sentence2: Why sleep?",
        "not_duplicate",
    ),
    "multinli": (
        {
            "promptID": 1,
            "pairID": "1e",
            "premise": "A dog runs.",
            "hypothesis": "No dog runs.",
            "genre": "x",
            "label": 2,
        },
        "multinli: premise: A dog runs. hypothesis: No dog runs.",
        "contradiction",
    ),
    "scitail": (
        {"premise": "Water boils at 100 C.", "hypothesis": "Water boils.", "label": "entails"},
        "scitail: premise: Water boils at 100 C. hypothesis: Water boils.",
        "entailment",
    ),
    "imdb": ({"text": "Awful plot.", "label": 0}, "imdb: sentence: Awful plot.", "negative"),
    "yelp_polarity": (
        {"text": "Great tacos!", "label": 1},
        "yelp_polarity: sentence: Great tacos!",
        "positive",
    ),
    "paws": (
        {"id": 1, "sentence1": "A b c.", "sentence2": "C b a.", "label": 0},
        "paws: sentence1: A b c. sentence2: C b a.",
        "not_equivalent",
    ),
}


def test_every_builtin_task_has_a_format_test():
    from tests.test_qa_tasks import FORMATTED

    assert set(HUB_ROWS) | FORMATTED == set(
        BUILTIN_TASKS
    )  # the SuperGLUE and QA tasks: tests/test_qa_tasks.py
    assert len(BUILTIN_TASKS) == 13 + 14


@pytest.mark.parametrize("name", sorted(HUB_ROWS))
def test_builtin_task_formats_hub_row(name):
    row, expected_input, expected_target = HUB_ROWS[name]
    task = get_task(name)
    assert task.format_input(row) == expected_input
    assert task.format_target(row) == expected_target
    assert task.parse(expected_target) == pytest.approx(task.gold(row), abs=0.05)


@pytest.mark.parametrize(
    ("name", "hub_path", "hub_name", "eval_split"),
    [
        ("mnli", "nyu-mll/glue", "mnli", "validation_matched"),
        ("rte", "nyu-mll/glue", "rte", "validation"),
        ("multinli", "nyu-mll/multi_nli", None, "validation_matched"),
        ("scitail", "allenai/scitail", "tsv_format", "test"),
        ("imdb", "stanfordnlp/imdb", None, "test"),
        ("yelp_polarity", "fancyzhx/yelp_polarity", None, "test"),
        ("paws", "google-research-datasets/paws", "labeled_final", "test"),
    ],
)
def test_hub_locations_and_splits(name, hub_path, hub_name, eval_split):
    task = get_task(name)
    assert (task.hub_path, task.hub_name, task.train_split, task.eval_split) == (
        hub_path,
        hub_name,
        "train",
        eval_split,
    )


def test_stsb_grid_round_trip():
    stsb = get_task("stsb")
    assert stsb.is_regression
    assert stsb.format_target({"label": 3.77}) == "3.8"
    assert stsb.parse("3.8") == 3.8
    assert stsb.gold({"label": 3.77}) == 3.77
    assert stsb.format_target({"label": 0.0}) == "0.0"
    assert stsb.format_target({"label": 5.0}) == "5.0"
    assert stsb.format_target({"label": 2.5}) == "2.6"  # half-up on the 0.2 grid
    cands = stsb.candidates()
    assert len(cands) == 26 and cands[0] == "0.0" and cands[1] == "0.2" and cands[-1] == "5.0"
    assert stsb.parse("three") is None
    with pytest.raises(TaskError, match="outside the range"):
        stsb.format_target({"label": 5.5})


def test_classification_parse_and_labels():
    mnli = get_task("mnli")
    assert not mnli.is_regression
    assert mnli.candidates() == ["entailment", "neutral", "contradiction"]
    assert mnli.parse(" neutral ") == 1.0
    assert mnli.parse("maybe") is None
    assert mnli.gold({"label": 2}) == 2.0
    with pytest.raises(TaskError, match="outside the class ids 0..2"):
        mnli.format_target({"label": 3})
    with pytest.raises(TaskError, match="outside the class ids"):
        mnli.gold({"label": -1})
    with pytest.raises(TaskError, match="not one of"):
        get_task("scitail").gold({"label": "contradicts"})


def test_metrics_and_compat_reading():
    assert get_task("cola").metrics[0] == "matthews" and get_task("cola").compat_metric == "accuracy"
    assert get_task("mrpc").metrics[0] == "f1" and get_task("mrpc").compat_metric == "accuracy"
    assert (
        get_task("stsb").metrics == ("pearson", "spearman") and get_task("stsb").compat_metric == "spearman"
    )
    assert get_task("rte").metrics == ("accuracy",) and get_task("rte").compat_metric == "accuracy"
    assert get_task("qqp").metrics[0] == "f1" and get_task("qqp").compat_metric == "accuracy"


def test_the_authors_stsb_targets_are_rounded_to_one_decimal_and_so_is_the_gold():
    stsb = replace(get_task("stsb"), regression_targets="round1_compat")
    assert stsb.format_target({"label": 3.9}) == "3.9"  # on the 0.2 grid it would be "4.0"
    assert get_task("stsb").format_target({"label": 3.9}) == "4.0"
    assert stsb.format_target({"label": 2.25}) == "2.2"  # np.round: half to even
    assert stsb.gold({"label": 3.77}) == 3.8 and get_task("stsb").gold({"label": 3.77}) == 3.77
    candidates = stsb.candidates()
    assert len(candidates) == 51 and candidates[:3] == ["0.0", "0.1", "0.2"] and candidates[-1] == "5.0"


def test_the_authors_character_truncation():
    rte = replace(get_task("rte"), truncation="chars_compat")
    row = {"sentence1": "a" * 300, "sentence2": "b" * 300, "label": 1}
    text = rte.format_input(row)
    # after the "rte: " prefix: 511 − len("not_entailment") − 50 = 447 characters of the text
    assert text.startswith("rte: sentence1: aaa") and len(text) == len("rte: ") + 511 - 14 - 50
    assert get_task("rte").format_input(row) == "rte: sentence1: " + "a" * 300 + " sentence2: " + "b" * 300
    short = {"sentence1": "A man sleeps.", "sentence2": "A man rests.", "label": 0}
    assert rte.format_input(short) == get_task("rte").format_input(short)
    qnli = replace(get_task("qnli"), truncation="chars_compat")
    text = qnli.format_input({"question": "q" * 150, "sentence": "s" * 400, "label": 0})
    body = "question: " + "q" * 100 + " sentence: " + "s" * 350  # each column cut first, then the whole
    assert text == "qnli: " + body[: 511 - len("entailment") - 50]
    # no label (prediction): the longest valid answer is reserved
    unlabelled = rte.format_input({"sentence1": "a" * 600, "sentence2": "b"})
    assert len(unlabelled) == len("rte: ") + 511 - len("not_entailment") - 50


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match="unknown task 'nope'.*rte.*paws.*glue"):
        get_task("nope")


def test_task_sets():
    assert TASK_SETS["glue"] == ["mnli", "qnli", "rte", "cola", "sst2", "stsb", "mrpc", "qqp"]
    assert TASK_SETS["set2"] == ["multinli", "scitail", "imdb", "yelp_polarity", "paws", "mrpc"]
    assert TASK_SETS["set2_mnli"] == [*TASK_SETS["set2"], "mnli"]
    assert [t.name for t in resolve_tasks("demo")] == TASK_SETS["demo"]


def test_resolve_tasks_forms():
    assert [t.name for t in resolve_tasks(["rte", "mrpc"])] == ["rte", "mrpc"]
    assert [t.name for t in resolve_tasks("rte,mrpc")] == ["rte", "mrpc"]
    assert [t.name for t in resolve_tasks(["set2", "mnli"])] == [*TASK_SETS["set2"], "mnli"]
    tasks = resolve_tasks({"rte": None, "stsb": {"metrics": ["spearman"]}})
    assert [t.name for t in tasks] == ["rte", "stsb"] and tasks[1].metrics == ("spearman",)
    spec = get_task("sst2")
    assert resolve_tasks([spec, "rte"])[0] is spec


def test_user_task_and_bad_definitions():
    task = get_task(
        "mine",
        {
            "hub_path": "me/mine",
            "template": "mine: sentence: {txt}",
            "label_column": "y",
            "label_words": ["no", "yes"],
        },
    )
    assert task.format_input({"txt": "hi", "y": 1}) == "mine: sentence: hi"
    assert task.format_target({"txt": "hi", "y": 1}) == "yes"
    with pytest.raises(TaskError, match="unknown keys \\['colour'\\]"):
        get_task("rte", {"colour": "red"})
    with pytest.raises(TaskError, match="exactly one of"):
        TaskSpec(name="x", hub_path="a/b", template="{s}")
    with pytest.raises(TaskError, match="unknown `metrics`"):
        get_task("rte", {"metrics": ["bleu"]})
    with pytest.raises(TaskError, match="no column 'sentence2'"):
        get_task("rte").format_input({"sentence1": "a"})
    # the authors' format of a user task: its "<task>: " written "src-<task>: " (None written "none", as theirs)
    authors = replace(task, input_format="authors_compat")
    assert authors.format_input({"txt": None, "y": 1}) == "src-mine: sentence: none"
    with pytest.raises(TaskError, match="`authors_template` .* must name the columns"):
        replace(get_task("qnli"), authors_template="src-qnli: sentence1: {question}")


# ------------------------------------------------------------------------------------------- Hydra
@pytest.fixture
def hydra_dir(tmp_path):
    """A throwaway primary config next to a copy of conf/tasks plus a user task file."""
    shutil.copytree(CONF_TASKS, tmp_path / "tasks")
    (tmp_path / "primary.yaml").write_text("defaults:\n  - tasks: demo\n  - _self_\n")
    user = {
        "mytask": {
            "data_dir": str(tmp_path / "mydata"),
            "template": "mytask: sentence: {text}",
            "label_words": ["bad", "good"],
        }
    }
    (tmp_path / "tasks" / "mytask.yaml").write_text(yaml.safe_dump(user))
    return tmp_path


def _compose(config_dir, overrides):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="primary", overrides=overrides).tasks)


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ([], TASK_SETS["demo"]),
        (["tasks=glue"], TASK_SETS["glue"]),
        (["tasks=set2"], TASK_SETS["set2"]),
        (["tasks=set2_mnli"], TASK_SETS["set2_mnli"]),
        (["tasks=[rte,mrpc]"], ["rte", "mrpc"]),
    ],
)
def test_hydra_task_group_composes(hydra_dir, override, names):
    tasks = _compose(hydra_dir, override)
    assert list(tasks) == names
    assert all(v == {} for v in tasks.values())
    assert [t.name for t in resolve_tasks(tasks)] == names


def test_hydra_user_task_and_override(hydra_dir):
    tasks = _compose(hydra_dir, ["tasks=[rte,mytask]", "+tasks.rte.eval_split=train"])
    specs = resolve_tasks(tasks)
    assert [t.name for t in specs] == ["rte", "mytask"]
    assert specs[0].eval_split == "train"
    assert specs[1].data_dir == str(hydra_dir / "mydata")
    assert specs[1].format_target({"text": "x", "label": 1}) == "good"


def test_every_conf_option_is_a_task_or_set():
    for path in CONF_TASKS.glob("*.yaml"):
        content = yaml.safe_load(path.read_text())
        if "defaults" in content:
            assert path.stem in TASK_SETS
            assert [d for d in content["defaults"] if d != "_self_"] == TASK_SETS[path.stem]
        else:
            assert list(content) == [path.stem]
            resolve_tasks(content)  # built-in or a complete user definition


# The authors' inputs (``protocol=authors``; ``attempt/data/tasks.py`` c7a19a2): each task's preprocessor lists
# (field label, column) pairs — qnli cuts its columns to 100 and 350 characters — and ``seq2seq_format`` joins
# ``src-<their task name>:`` (``add_prefix``, on in every ComPT config) and them with spaces, strips the result
# and cuts it to 511 − len(target) − prompt_length characters, prompt_length = 50 in their configs (L639,
# L659–681). task -> (their task name, fields, line of the preprocessor, the string for HUB_ROWS' row)
AUTHORS_INPUTS = {
    "mnli": (
        "mnli",
        [("sentence1:", "premise"), ("sentence2:", "hypothesis")],
        1398,
        "src-mnli: sentence1: A dog runs. sentence2: An animal moves.",
    ),
    "qnli": (
        "qnli",
        [("sentence1:", "question", 100), ("sentence2:", "sentence", 350)],
        1517,
        "src-qnli: sentence1: Who runs? sentence2: A dog runs.",
    ),
    "rte": (
        "rte",
        [("sentence1:", "sentence1"), ("sentence2:", "sentence2")],
        1563,
        "src-rte: sentence1: A dog runs. sentence2: A cat sleeps.",
    ),
    "cola": ("cola", [("sentence1:", "sentence")], 917, "src-cola: sentence1: Dog the runs."),
    "sst2": ("sst2", [("sentence1:", "sentence")], 987, "src-sst2: sentence1: a lovely film"),
    "stsb": (
        "stsb",
        [("sentence1:", "sentence1"), ("sentence2:", "sentence2")],
        1045,
        "src-stsb: sentence1: A dog runs. sentence2: A dog is running.",
    ),
    "mrpc": (
        "mrpc",
        [("sentence1:", "sentence1"), ("sentence2:", "sentence2")],
        867,
        "src-mrpc: sentence1: He left. sentence2: He went away.",
    ),
    "qqp": (
        "qqp",
        [("sentence1:", "question1"), ("sentence2:", "question2")],
        1371,
        "src-qqp: sentence1: Why run? sentence2: Why sleep?",
    ),
    "multinli": (
        "multinli",
        [("premise:", "premise"), ("hypothesis:", "hypothesis")],
        1491,
        "src-multinli: premise: A dog runs. hypothesis: No dog runs.",
    ),
    "scitail": (  # their snli_format columns sentence1/sentence2 hold what tsv_format calls premise/hypothesis
        "scitail",
        [("premise:", "premise"), ("hypothesis:", "hypothesis")],
        841,
        "src-scitail: premise: Water boils at 100 C. hypothesis: Water boils.",
    ),
    "imdb": ("imdb", [("sentence:", "text")], 937, "src-imdb: sentence: Awful plot."),
    "yelp_polarity": (
        "yelp-polarity",
        [("sentence:", "text")],
        1007,
        "src-yelp-polarity: sentence: Great tacos!",
    ),
    "paws": (
        "paws",
        [("sentence1:", "sentence1"), ("sentence2:", "sentence2")],
        1443,
        "src-paws: sentence1: A b c. sentence2: C b a.",
    ),
}


def authors_input(task: str, row: dict, target: str) -> str:
    """The source string the authors' code fed T5 for ``row`` (before the prompt tokens it appended)."""
    name, fields, _, _ = AUTHORS_INPUTS[task]
    parts = [f"src-{name}:"]
    for label, column, *limit in fields:
        parts += [label, row[column][: limit[0]] if limit else row[column]]
    return " ".join(parts).strip()[: 511 - len(target) - 50]


@pytest.fixture(scope="module")
def authors_tasks():
    from compt.config.run_config import RunConfig
    from tests.test_configs import composed

    tasks = RunConfig.from_hydra(composed("protocol=authors", f"tasks=[{','.join(BUILTIN_TASKS)}]")).tasks
    return {task.name: task for task in tasks}


def test_every_builtin_task_has_its_authors_input():
    assert set(AUTHORS_INPUTS) == set(TASK_SETS["glue"]) | set(TASK_SETS["set2"])  # the paper's tasks


@pytest.mark.parametrize("name", sorted(AUTHORS_INPUTS))
def test_protocol_authors_writes_the_authors_input_strings(authors_tasks, name):
    task, (row, _, _) = authors_tasks[name], HUB_ROWS[name]
    target = task.format_target(row)
    assert task.format_input(row) == AUTHORS_INPUTS[name][3] == authors_input(name, row, target)
    # long fields: the cut counts the whole string, "src-<task>: " included
    long_row = {**row, **{column: f" {column} " + "word " * 120 for _, column, *_ in AUTHORS_INPUTS[name][1]}}
    text = task.format_input(long_row)
    assert text == authors_input(name, long_row, target)
    assert len(text) == 511 - len(target) - 50 and text.startswith(AUTHORS_INPUTS[name][3][:10])


# SuperGLUE in the authors' code (c7a19a2): their task names superglue-<config>, the fields of T5's SuperGLUE
# preprocessing (multirc without HTML tags, wsc's spans marked). task -> (line of their fields, the string for
# the row of tests/test_qa_tasks.py)
SUPERGLUE_AUTHORS = {
    "boolq": (1622, "src-superglue-boolq: question: is the sky blue passage: The sky is blue."),
    "cb": (1662, "src-superglue-cb: premise: It rains. hypothesis: It is dry."),
    "multirc": (
        1726,
        "src-superglue-multirc: question: Who won? answer: Tom paragraph: Sent 1: Tom ran. Sent 2: He won.",
    ),
    "wic": (
        1747,
        "src-superglue-wic: sentence1: He sat on the bank. sentence2: The bank lent money. word: bank",
    ),
    "wsc": (
        1815,
        "src-superglue-wsc.fixed: text: * Mark * told Pete many lies about himself , which Pete included in "
        "# his # book .",
    ),
}


@pytest.mark.parametrize("name", sorted(SUPERGLUE_AUTHORS))
def test_protocol_authors_writes_superglue_as_the_authors_code(authors_tasks, name):
    from tests import test_qa_tasks

    row = getattr(test_qa_tasks, name.upper())
    assert authors_tasks[name].format_input(row) == SUPERGLUE_AUTHORS[name][1]
    assert get_task(name).format_input(row).startswith(f"{name}: ")  # the paper's format keeps compt's name
