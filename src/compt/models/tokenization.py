"""Text -> token ids for the two backbone families, in one place (training data, rank candidates, ``predict``).

* ``seq2seq`` (T5): the tokenizer's own behaviour — input and target each end with ``</s>``.
* ``causal`` (decoder-only LMs): the input is ``[BOS] text`` (BOS only if the tokenizer adds one itself; never
  EOS) and the target is the answer *as the model sees it after the text* — with the leading space the
  tokenizer writes between words (``" positive"`` → ``Ġpositive`` in byte-level BPE, ``▁positive`` in
  SentencePiece) — followed by EOS. The model class builds ``[prompt] text [prompt] answer <eos>`` from these.

A tokenizer's family is marked on it by :func:`prepare_tokenizer` (``load_backbone`` does this); an unmarked
tokenizer is treated as ``seq2seq``, today's behaviour.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

FAMILIES = ("seq2seq", "causal")
#: attribute set on a tokenizer by :func:`prepare_tokenizer`
FAMILY_ATTRIBUTE = "compt_family"
#: a word the continuation of a label is measured after (``"x positive"`` minus ``"x"``)
_ANCHOR = "x"


def prepare_tokenizer(tokenizer: Any, family: str) -> Any:
    """Mark ``tokenizer`` with its backbone's family; a causal one without a pad token pads with EOS.

    Returns the same tokenizer object.
    """
    if family not in FAMILIES:
        raise ValueError(f"backbone family {family!r}; choose one of {', '.join(FAMILIES)}")
    setattr(tokenizer, FAMILY_ATTRIBUTE, family)
    if family == "causal":
        if tokenizer.eos_token_id is None:
            raise ValueError("a causal LM's tokenizer needs an EOS token (answers end with it)")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenizer_family(tokenizer: Any) -> str:
    """``causal`` or ``seq2seq`` (the default for a tokenizer :func:`prepare_tokenizer` never saw)."""
    return getattr(tokenizer, FAMILY_ATTRIBUTE, "seq2seq")


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts its BOS token in front of a text by itself (Llama yes; GPT-2, Qwen no)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer(_ANCHOR).input_ids[:1] == [bos]


def continuation_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as it follows another word after a space, without special tokens.

    Measured as ``ids("x " + text)`` minus ``ids("x")``, so that the tokenizer's own word-boundary rule applies;
    ``ids(" " + text)`` where the two do not share that prefix.
    """
    anchor = tokenizer(_ANCHOR, add_special_tokens=False).input_ids
    full = tokenizer([f"{_ANCHOR} {text}" for text in texts], add_special_tokens=False).input_ids
    out = []
    for text, ids in zip(texts, full):
        if ids[: len(anchor)] == anchor and len(ids) > len(anchor):
            out.append(ids[len(anchor) :])
        else:
            out.append(tokenizer(f" {text}", add_special_tokens=False).input_ids)
    return out


def encode_inputs(tokenizer: Any, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Input ids of each text, at most ``max_length`` (seq2seq: ending with ``</s>``; causal: ``[BOS] text``)."""
    if tokenizer_family(tokenizer) == "seq2seq":
        return tokenizer(list(texts), truncation=max_length is not None, max_length=max_length)["input_ids"]
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    return [(bos + seq)[:max_length] for seq in ids]


def input_encoder(tokenizer: Any) -> Callable[[str], list[int]]:
    """One text's input ids as :func:`encode_inputs` gives them without ``max_length``, for a caller that encodes
    texts one at a time (a server, a row per request): a fast tokenizer's Rust backend is called directly (a
    private copy, without truncation or padding), which skips transformers' per-call work and holds the GIL
    (a batch call releases it, and a server's event loop then waits for the model's thread to hand it back).
    Other tokenizers go through :func:`encode_inputs`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return lambda text: encode_inputs(tokenizer, [text])[0]
    backend = copy.deepcopy(backend)
    backend.no_truncation()
    backend.no_padding()
    if tokenizer_family(tokenizer) == "seq2seq":
        return lambda text: backend.encode(text).ids
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    return lambda text: bos + backend.encode(text, add_special_tokens=False).ids


def encode_targets(tokenizer: Any, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Target ids of each answer, at most ``max_length`` (seq2seq: ending with ``</s>``; causal: the
    answer's continuation ids after the text, then EOS — EOS kept when truncated)."""
    if tokenizer_family(tokenizer) == "seq2seq":
        return tokenizer(list(texts), truncation=max_length is not None, max_length=max_length)["input_ids"]
    keep = None if max_length is None else max(max_length - 1, 0)
    return [[*ids[:keep], tokenizer.eos_token_id] for ids in continuation_ids(tokenizer, list(texts))]


__all__ = [
    "FAMILIES",
    "adds_bos",
    "continuation_ids",
    "encode_inputs",
    "encode_targets",
    "input_encoder",
    "prepare_tokenizer",
    "tokenizer_family",
]
