"""Named row rewrites a task may apply before its template is filled (``TaskSpec.preprocess``).

Some benchmarks store text with markup their standard input string leaves out or adds (T5's SuperGLUE
preprocessing, which ATTEMPT and MPT inherit): ReCoRD's ``@highlight`` lines, MultiRC's HTML tags, WSC's
marked spans. Each rewrite is a pure function ``row -> row`` (the other columns are kept), listed here by
name so that a task stays data: ``preprocess: wsc_spans`` in its YAML.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]


def record_highlights(row: Row) -> dict[str, Any]:
    """ReCoRD: the passage's ``@highlight`` lines become sentences (T5's ``record`` preprocessor)::

    "A said.\\n@highlight\\nB" -> "A said. B";  "A\\n@highlight\\nB" -> "A. B"
    """
    passage = re.sub(r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ", str(row["passage"]))
    return {**row, "passage": re.sub(r"\n@highlight\n", ". ", passage)}


def _unmark(text: Any) -> str:
    """Drop ``<br>`` and ``<b>``/``</b>`` tags (MultiRC's paragraphs carry them)."""
    return re.sub(r"<(/)?b>", "", re.sub(r"<br>", " ", str(text)))


def multirc_markup(row: Row) -> dict[str, Any]:
    """MultiRC: paragraph, question and answer without their HTML tags (T5's ``multirc`` preprocessor)."""
    return {**row, **{key: _unmark(row[key]) for key in ("paragraph", "question", "answer")}}


def _mark_span(text: str, span: str, index: int, mark: str) -> str:
    """``span`` at word ``index`` of ``text`` written ``{mark} span {mark}`` (nothing changes if it is not there)."""
    pattern = rf"^((?:\S+\s){{{index}}})({re.escape(span)})"
    return re.sub(pattern, rf"\1{mark} \2 {mark}", text)


def wsc_spans(row: Row) -> dict[str, Any]:
    """WSC: the noun (span 1) written ``* noun *`` and the pronoun (span 2) ``# pronoun #`` in ``text``, as T5
    writes it (``"# This # is a * test * sentence ."``)."""
    index1, index2 = int(row["span1_index"]), int(row["span2_index"])
    text = _mark_span(str(row["text"]), str(row["span1_text"]), index1, "*")
    shift = 2 if index1 < index2 else 0  # the two marks of span 1 are words too
    return {**row, "text": _mark_span(text, str(row["span2_text"]), index2 + shift, "#")}


@dataclass(frozen=True)
class Rewrite:
    """One named rewrite: the function and the columns it reads (they must be in every row)."""

    apply: Callable[[Row], dict[str, Any]]
    reads: tuple[str, ...]


#: name -> rewrite (``TaskSpec.preprocess``)
REWRITES: dict[str, Rewrite] = {
    "record_highlights": Rewrite(record_highlights, ("passage",)),
    "multirc_markup": Rewrite(multirc_markup, ("paragraph", "question", "answer")),
    "wsc_spans": Rewrite(wsc_spans, ("text", "span1_index", "span2_index", "span1_text", "span2_text")),
}
