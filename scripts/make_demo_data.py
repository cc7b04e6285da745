"""Write the bundled demo dataset ``src/compt/assets/demo_data/<task>/<split>.jsonl``.

Every sentence is generated here from small hand-written word lists (nothing is copied from any dataset).
Each task keeps the column names and label ids of its Hugging Face hub dataset, so the same formatting code
runs on the demo rows and on the real data. Labels follow simple, learnable cues (sentiment words, word
overlap, a negation, a swapped word order) so that a tiny model can learn something in seconds.

The output is a pure function of ``SEED``: run ``python scripts/make_demo_data.py`` to regenerate it.
"""

from __future__ import annotations

import argparse
import json
import random
import zlib
from collections.abc import Callable
from pathlib import Path

SEED = 1234
TRAIN_ROWS = 64
EVAL_ROWS = 32
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "compt" / "assets" / "demo_data"

# ---------------------------------------------------------------- word lists (written for this project)
THINGS = ["the film", "the movie", "the food", "the show", "the book", "the hotel", "the song", "the game"]
VERBS = ["was", "is", "felt", "seemed"]
INTENS = ["", "very ", "really ", "quite "]
POS = ["great", "good", "fun", "lovely", "nice", "superb", "warm", "bright"]
NEG = ["bad", "awful", "boring", "dull", "poor", "weak", "cold", "sad"]
PEOPLE = ["a man", "a woman", "a boy", "a girl", "a cook", "a nurse", "a child", "a pilot"]
ACTIONS = [
    "is playing golf",
    "is reading news",
    "is eating cake",
    "is riding a bike",
    "is baking bread",
    "is walking a dog",
    "is washing a car",
    "is singing songs",
]
PLACES = ["in a park", "at home", "at school", "in town", "at work", "by a lake"]
EXTRAS = ["with friends", "for an hour", "in the rain", "after lunch"]
#: copa: a cause and an effect of each of ACTIONS (same order)
CAUSES = [
    "had a free day",
    "wanted the news",
    "was hungry",
    "was late for work",
    "had some flour",
    "had a young dog",
    "had a dirty car",
    "was in a good mood",
]
EFFECTS = [
    "won the game",
    "knew the news",
    "felt full",
    "got to work fast",
    "had fresh bread",
    "was tired",
    "had a clean car",
    "made people smile",
]


def _person_action(rng: random.Random) -> tuple[str, int, str]:
    """A random person, action index and place."""
    return rng.choice(PEOPLE), rng.randrange(len(ACTIONS)), rng.choice(PLACES)


def _verb_only(action: str) -> str:
    """'is playing a guitar' -> 'is playing'."""
    return " ".join(action.split()[:2])


def _negate(action: str) -> str:
    """'is playing a guitar' -> 'is not playing a guitar'."""
    head, rest = action.split(" ", 1)
    return f"{head} not {rest}"


def _other_action(rng: random.Random, i: int) -> str:
    """An action different from ``ACTIONS[i]``."""
    return ACTIONS[(i + rng.randrange(1, len(ACTIONS))) % len(ACTIONS)]


# ---------------------------------------------------------------- row makers: (rng, label) -> row
def review(rng: random.Random, label: int) -> str:
    """A one-clause review whose polarity word decides the label (0 negative, 1 positive)."""
    return f"{rng.choice(THINGS)} {rng.choice(VERBS)} {rng.choice(INTENS)}{rng.choice(POS if label else NEG)}"


def long_review(rng: random.Random, label: int) -> str:
    """A two-sentence review (imdb, yelp): both clauses share the polarity."""
    return f"{review(rng, label)}. i thought it {rng.choice(VERBS)} {rng.choice(POS if label else NEG)}"


def nli3(rng: random.Random, label: int) -> tuple[str, str]:
    """Premise/hypothesis with label 0 entailment (subset), 1 neutral (new detail), 2 contradiction (not)."""
    who, i, where = _person_action(rng)
    premise = f"{who} {ACTIONS[i]} {where}"
    if label == 0:
        hyp = rng.choice([f"{who} {_verb_only(ACTIONS[i])}", f"{who} {ACTIONS[i]}"])
    elif label == 1:
        hyp = f"{who} {ACTIONS[i]} {rng.choice(EXTRAS)}"
    else:
        hyp = f"{who} {_negate(ACTIONS[i])}"
    return premise, hyp


def nli2(rng: random.Random, label: int) -> tuple[str, str]:
    """Two-way NLI: 0 entailment (subset), 1 not entailment (negated or different action)."""
    if label == 0:
        return nli3(rng, 0)
    who, i, where = _person_action(rng)
    hyp = rng.choice([_negate(ACTIONS[i]), _other_action(rng, i)])
    return f"{who} {ACTIONS[i]} {where}", f"{who} {hyp}"


def paraphrase(rng: random.Random, label: int) -> tuple[str, str]:
    """Two sentences: 1 = same content with the place moved to the front, 0 = a different action."""
    who, i, where = _person_action(rng)
    first = f"{who} {ACTIONS[i]} {where}"
    if label == 1:
        return first, f"{where}, {who} {ACTIONS[i]}"
    return first, f"{where}, {who} {_other_action(rng, i)}"


def question_pair(rng: random.Random, label: int) -> tuple[str, str]:
    """Two questions: 1 = same question reworded, 0 = a different question."""
    who, i, where = _person_action(rng)
    first = f"why {ACTIONS[i].replace('is ', 'is ' + who + ' ', 1)} {where}?"
    if label == 1:
        return first, f"{where}, why {ACTIONS[i].replace('is ', 'is ' + who + ' ', 1)}?"
    return first, f"{where}, why {_other_action(rng, i).replace('is ', 'is ' + who + ' ', 1)}?"


def qnli(rng: random.Random, label: int) -> tuple[str, str]:
    """Question/sentence: 0 entailment (the sentence answers it), 1 not entailment (other action)."""
    who, i, where = _person_action(rng)
    question = f"where {ACTIONS[i].replace('is ', 'is ' + who + ' ', 1)}?"
    action = ACTIONS[i] if label == 0 else _other_action(rng, i)
    return question, f"{who} {action} {where}"


def cola(rng: random.Random, label: int) -> str:
    """1 acceptable (normal word order), 0 unacceptable (verb and object swapped or verb dropped)."""
    who, i, where = _person_action(rng)
    if label == 1:
        return f"{who} {ACTIONS[i]} {where}"
    head, verb, *obj = ACTIONS[i].split()
    return rng.choice([f"{who} {head} {' '.join(obj)} {verb} {where}", f"{who} {' '.join(obj)} {where}"])


def stsb(rng: random.Random) -> tuple[str, str, float]:
    """Two sentences and a 0..5 similarity that drops with every changed part."""
    who, i, where = _person_action(rng)
    first = f"{who} {ACTIONS[i]} {where}"
    score = 5.0
    who2, act2, where2 = who, ACTIONS[i], where
    if rng.random() < 0.5:
        who2 = rng.choice([p for p in PEOPLE if p != who])
        score -= 1.4
    if rng.random() < 0.5:
        act2 = _other_action(rng, i)
        score -= 2.2
    if rng.random() < 0.5:
        where2 = rng.choice([p for p in PLACES if p != where])
        score -= 0.8
    score = max(0.0, min(5.0, score + rng.choice([-0.25, 0.0, 0.0, 0.2, 0.25])))
    return first, f"{who2} {act2} {where2}", round(score, 3)


def _clause(who: str, i: int, where: str) -> str:
    return f"{who} {ACTIONS[i]} {where}"


def _question_form(who: str, i: int) -> str:
    """'a man', 'is playing golf' -> 'is a man playing golf'."""
    return ACTIONS[i].replace("is ", f"is {who} ", 1)


def squad_row(rng: random.Random, label: int, idx: int) -> dict:
    """SQuAD v1.1 columns: two people doing different things in different places; the question asks where, or
    who, about the first one, so the answer is a span of the context (its place or its person)."""
    people, actions, places = rng.sample(PEOPLE, 2), rng.sample(range(len(ACTIONS)), 2), rng.sample(PLACES, 2)
    context = ". ".join(_clause(w, i, p) for w, i, p in zip(people, actions, places)) + "."
    if rng.random() < 0.5:
        question, answer, start = (
            f"where {_question_form(people[0], actions[0])}?",
            places[0],
            context.index(places[0]),
        )
    else:
        question, answer, start = f"who {ACTIONS[actions[0]]} {places[0]}?", people[0], 0
    return {
        "id": f"demo{idx:05d}",
        "title": "demo",
        "context": context,
        "question": question,
        "answers": {"text": [answer], "answer_start": [start]},
    }


def copa_row(rng: random.Random, label: int, idx: int) -> dict:
    """SuperGLUE COPA columns: a premise, ``cause`` or ``effect``, two choices; ``label`` = the right one's
    index. The right choice is the premise action's cause or effect (CAUSES, EFFECTS); the wrong one is a
    phrase of the other list (an effect when a cause is asked), so the question word decides."""
    who, i, where = _person_action(rng)
    question = rng.choice(["cause", "effect"])
    right_table, wrong_table = (CAUSES, EFFECTS) if question == "cause" else (EFFECTS, CAUSES)
    wrong = rng.choice([j for j in range(len(ACTIONS)) if j != i])
    right, other = f"{who} {right_table[i]}.", f"{who} {wrong_table[wrong]}."
    choices = (right, other) if label == 0 else (other, right)
    return {
        "premise": f"{_clause(who, i, where)}.",
        "choice1": choices[0],
        "choice2": choices[1],
        "question": question,
        "idx": idx,
        "label": label,
    }


def boolq_row(rng: random.Random, label: int, idx: int) -> dict:
    """SuperGLUE BoolQ columns: a passage of two clauses and a yes/no question about the first; ``label`` 1
    (True) when it asks what the passage says, 0 when it asks the opposite (``is a man not playing golf``)."""
    people, actions, places = rng.sample(PEOPLE, 2), rng.sample(range(len(ACTIONS)), 2), rng.sample(PLACES, 2)
    passage = ". ".join(_clause(w, i, p) for w, i, p in zip(people, actions, places)) + "."
    asked = _question_form(people[0], actions[0])
    if label == 0:
        asked = asked.replace(f"is {people[0]} ", f"is {people[0]} not ", 1)
    return {"question": f"{asked} {places[0]}", "passage": passage, "idx": idx, "label": label}


# ---------------------------------------------------------------- tasks: hub columns and eval split names
def _single(col: str, make: Callable[[random.Random, int], str], with_idx: bool = True):
    def row(rng: random.Random, label: int, idx: int) -> dict:
        out = {col: make(rng, label), "label": label}
        return {**out, "idx": idx} if with_idx else out

    return row


def _pair(
    cols: tuple[str, str],
    make: Callable[[random.Random, int], tuple[str, str]],
    label_map: Callable[[int], object] = lambda x: x,
    extra: Callable[[int], dict] | None = None,
    with_idx: bool = True,
):
    def row(rng: random.Random, label: int, idx: int) -> dict:
        a, b = make(rng, label)
        out = {cols[0]: a, cols[1]: b, "label": label_map(label)}
        if extra:
            out = {**extra(idx), **out}
        return {**out, "idx": idx} if with_idx else out

    return row


def _stsb_row(rng: random.Random, label: int, idx: int) -> dict:
    a, b, score = stsb(rng)
    return {"sentence1": a, "sentence2": b, "label": score, "idx": idx}


#: task -> (eval split, number of classes (0 = regression), row maker)
TASKS: dict[str, tuple[str, int, Callable[[random.Random, int, int], dict]]] = {
    "sst2": ("validation", 2, _single("sentence", review)),
    "cola": ("validation", 2, _single("sentence", cola)),
    "rte": ("validation", 2, _pair(("sentence1", "sentence2"), nli2)),
    "mnli": ("validation_matched", 3, _pair(("premise", "hypothesis"), nli3)),
    "qnli": ("validation", 2, _pair(("question", "sentence"), qnli)),
    "mrpc": ("validation", 2, _pair(("sentence1", "sentence2"), paraphrase)),
    "qqp": ("validation", 2, _pair(("question1", "question2"), question_pair)),
    "stsb": ("validation", 0, _stsb_row),
    "multinli": ("validation_matched", 3, _pair(("premise", "hypothesis"), nli3, with_idx=False)),
    "scitail": (
        "test",
        2,
        _pair(("premise", "hypothesis"), nli2, lambda x: ["entails", "neutral"][x], with_idx=False),
    ),
    "paws": (
        "test",
        2,
        _pair(("sentence1", "sentence2"), paraphrase, extra=lambda i: {"id": i + 1}, with_idx=False),
    ),
    "imdb": ("test", 2, _single("text", long_review, with_idx=False)),
    "yelp_polarity": ("test", 2, _single("text", long_review, with_idx=False)),
    "squad": ("validation", 0, squad_row),
    "copa": ("validation", 2, copa_row),
    "boolq": ("validation", 2, boolq_row),
}


#: tasks written into the package (the whole GLUE set and BUNDLED_QA, < 200 kB); the SET2-only tasks have generators too
#: (``--tasks multinli scitail imdb yelp_polarity paws --out DIR``) but are not bundled to keep the wheel small.
BUNDLED = ["mnli", "qnli", "rte", "cola", "sst2", "stsb", "mrpc", "qqp"]
#: the demo of the other task kinds (``experiment=demo_qa``): extractive QA, per-row choices, SuperGLUE
BUNDLED_QA = ["squad", "copa", "boolq"]


def make_split(task: str, split: str, n: int) -> list[dict]:
    """``n`` rows of ``task``/``split``; classes cycle so every split is balanced."""
    rng = random.Random(SEED * 1_000_003 + zlib.crc32(f"{task}/{split}".encode()))
    _, num_classes, make = TASKS[task]
    labels = [i % max(num_classes, 1) for i in range(n)]
    rng.shuffle(labels)
    return [make(rng, label, idx) for idx, label in enumerate(labels)]


def write(out: Path, tasks: list[str]) -> None:
    """Write every task's train and eval split as JSON lines under ``out``."""
    for task in tasks:
        eval_split = TASKS[task][0]
        for split, n in (("train", TRAIN_ROWS), (eval_split, EVAL_ROWS)):
            path = out / task / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = make_split(task, split, n)
            path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--tasks", nargs="*", default=BUNDLED + BUNDLED_QA, help="default: the bundled GLUE and QA tasks"
    )
    args = parser.parse_args()
    write(args.out, args.tasks)


if __name__ == "__main__":
    main()
