"""Build the tiny decoder-only causal LM that ships with compt (``model.name=tiny-causal``: tests and
``experiment=demo_causal``).

It is a real model directory, loaded through the same ``from_pretrained`` path as any Hugging Face causal LM
(``AutoModelForCausalLM``): a 4-layer Llama-architecture model with d_model 64 (grouped-query attention,
RoPE, tied embeddings, attention dropout 0.1), randomly initialised and then pretrained, saved with
``save_pretrained``.

Its tokenizer is derived from the bundled tiny T5's SentencePiece vocabulary (``scripts/make_tiny_model.py``,
where every label word is one piece ``▁positive``), re-cast as a Llama-style tokenizer: ``<s>`` (id 0, the
T5's ``<pad>`` slot) is a BOS the tokenizer adds in front of every text, ``</s>`` is EOS, and there is **no pad
token** (compt pads with EOS, as for most real causal LMs). So every label word is a single token after a
space, and the real tokenizers' BOS and no-pad cases are exercised.

Pretraining is the tiny T5's mixture (:func:`make_tiny_model.example_maker`): word copying, and each bundled
demo task behind a hidden 3-piece **instruction** written after the text, with the loss on the answer only,
in compt's own causal layout ``[BOS] text [instruction] answer </s>`` (tokenised by
:mod:`compt.models.tokenization`). Without its instruction the model copies a span of the input, so untrained soft
prompts score 0 with greedy generation and trained ones (in the instruction's slot, ``prompt.position=after``)
recover the tasks. The demo's accuracy says nothing about generalisation (the pretraining rows come from the
demo data's own generators).

    python scripts/make_tiny_causal_model.py [--out src/compt/assets/tiny-causal]   # about 5 minutes, one CPU thread
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from compt.models.tokenization import encode_inputs, encode_targets, prepare_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_model  # the tiny T5's vocabulary and pretraining mixture (a sibling script)

ROOT = Path(__file__).resolve().parents[1]
TINY_T5 = ROOT / "src" / "compt" / "assets" / "tiny-t5"
DEFAULT_OUT = ROOT / "src" / "compt" / "assets" / "tiny-causal"
BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def derive_tokenizer(t5_dir: Path = TINY_T5) -> PreTrainedTokenizerFast:
    """The tiny T5's unigram vocabulary with Llama-style special tokens: BOS ``<s>`` added in front of every
    text (replacing the T5's ``<pad>``, id 0), EOS ``</s>`` (id 1), ``<unk>`` (id 2), no pad token."""
    spec = json.loads((t5_dir / "tokenizer.json").read_text())
    old = spec["model"]["vocab"][0][0]
    spec["model"]["vocab"][0][0] = BOS
    spec["added_tokens"] = [t | {"content": BOS} if t["content"] == old else t for t in spec["added_tokens"]]
    spec["padding"] = None
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": BOS, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 0}},
        ],
        "special_tokens": {BOS: {"id": BOS, "ids": [0], "tokens": [BOS]}},
    }
    backend = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS, unk_token=UNK)


def build_model(vocab_size: int, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        attention_dropout=0.1,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=None,
    )
    return LlamaForCausalLM(config)


def causal_batch(tokenizer: PreTrainedTokenizerFast, pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """``[BOS] text answer </s>`` per pair, right-padded; labels -100 everywhere but on the answer."""
    inputs = encode_inputs(tokenizer, [x for x, _ in pairs], max_length=make_tiny_model.MAX_INPUT_TOKENS)
    targets = encode_targets(tokenizer, [y for _, y in pairs])
    width = max(len(x) + len(y) for x, y in zip(inputs, targets))
    ids = torch.full((len(pairs), width), tokenizer.pad_token_id)
    labels = torch.full((len(pairs), width), -100)
    attention = torch.zeros(len(pairs), width, dtype=torch.long)
    for row, (x, y) in enumerate(zip(inputs, targets)):
        ids[row, : len(x) + len(y)] = torch.tensor(x + y)
        labels[row, len(x) : len(x) + len(y)] = torch.tensor(y)
        attention[row, : len(x) + len(y)] = 1
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def pretrain(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, steps: int, seed: int, lr: float
) -> float:
    """:func:`make_tiny_model.train` on :func:`make_tiny_model.example_maker`'s mixture in the causal layout
    (:func:`causal_batch`, 32 pairs a batch), gradient norms clipped at 1. Returns the final loss."""
    # the GLUE demo's tasks only (the QA demo's were added to the tiny T5's pretraining after this model was made)
    example = make_tiny_model.example_maker(
        tokenizer, seed, task_names=make_tiny_model.make_demo_data.BUNDLED
    )
    return make_tiny_model.train(
        model, lambda: causal_batch(tokenizer, [example() for _ in range(32)]), steps, lr, clip=1.0
    )


def main() -> None:
    parser = make_tiny_model.argument_parser(__doc__, DEFAULT_OUT, steps=3000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    tokenizer = prepare_tokenizer(derive_tokenizer(), "causal")
    model = build_model(len(tokenizer), args.seed)
    loss = pretrain(model, tokenizer, args.pretrain_steps, args.seed, args.lr)
    print(
        f"pretrained {args.pretrain_steps} steps in {time.perf_counter() - started:.0f} s, final loss {loss:.3f}"
    )
    tokenizer.pad_token = None  # saved without one, like most causal LMs; compt pads with EOS
    make_tiny_model.save(model, tokenizer, args.out)


if __name__ == "__main__":
    main()
