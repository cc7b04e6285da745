"""Build the tiny T5 that ships with compt (tests and the demo).

It is a real model directory, loaded through the same ``from_pretrained`` path as ``t5-base``:
a SentencePiece unigram tokenizer trained here on the bundled demo text (plus every built-in label word
and template word, so each label word is one token) and a 2+2-layer T5 with d_model 64, randomly initialised
and then pretrained for a few hundred steps on a word-copying objective over the same text (a frozen random
network is too hard for prompts to steer; real backbones are pretrained too), saved with ``save_pretrained``.

    python scripts/make_tiny_model.py [--out src/compt/assets/tiny-t5]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import string
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = ROOT / "src" / "compt" / "assets" / "demo_data"
DEFAULT_OUT = ROOT / "src" / "compt" / "assets" / "tiny-t5"

# Words every built-in task's input template or target uses (METHOD.md §5), so they tokenise compactly.
TASK_WORDS = (
    "mnli qnli rte cola sst2 stsb mrpc qqp multinli scitail imdb yelp_polarity paws "
    "sentence: sentence1: sentence2: premise: hypothesis: question: question1: question2: text: "
    "entailment not_entailment neutral contradiction acceptable unacceptable positive negative "
    "equivalent not_equivalent duplicate not_duplicate"
)

#: targets become single tokens, so the tiny model learns them quickly
LABEL_WORDS = [w for w in TASK_WORDS.split() if (not w.endswith(":") and w.isalpha()) or "_" in w]


def corpus_lines() -> list[str]:
    """Demo text, task words, and the STS-B grid values (0.0 .. 5.0)."""
    lines = [TASK_WORDS, string.printable.strip()]
    lines += [" ".join(f"{i / 5:.1f}" for i in range(26))]
    for path in sorted(DEMO_DATA.glob("*/*.jsonl")):
        for row in path.read_text().splitlines():
            lines += [str(v) for v in json.loads(row).values() if isinstance(v, str)]
    return lines


def train_tokenizer(vocab_size: int) -> T5Tokenizer:
    """A SentencePiece unigram model with T5's special ids (pad 0, </s> 1, <unk> 2), wrapped as T5Tokenizer."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        user_defined_symbols=LABEL_WORDS,
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    # label words as word-initial pieces ("▁positive"), so each target is one token plus </s>
    pieces = [f"▁{p}" if p in LABEL_WORDS else p for p in pieces]
    vocab = [(piece, processor.get_score(i)) for i, piece in enumerate(pieces)]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_model(vocab_size: int, seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=16,
        dropout_rate=0.1,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5ForConditionalGeneration(config)


def pretrain(model: T5ForConditionalGeneration, tokenizer: T5Tokenizer, steps: int, seed: int) -> float:
    """Full-model training on a copying objective: from a demo sentence (half of the time with a task word
    inserted at random), output either that inserted word or a 3-word span of the sentence. Returns the
    final loss."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    sentences = [line for line in corpus_lines() if len(line.split()) > 2]
    words = TASK_WORDS.split()

    def example() -> tuple[str, str]:
        tokens = rng.choice(sentences).split()
        if rng.random() < 0.5:
            word = rng.choice(words + tokens)
            tokens.insert(rng.randrange(len(tokens) + 1), word)
            return " ".join(tokens), word
        start = rng.randrange(len(tokens))
        return " ".join(tokens), " ".join(tokens[start : start + 3])

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        pairs = [example() for _ in range(32)]
        inputs = tokenizer(
            [x for x, _ in pairs], padding=True, truncation=True, max_length=64, return_tensors="pt"
        )
        labels = tokenizer([y for _, y in pairs], padding=True, return_tensors="pt").input_ids
        labels[labels == tokenizer.pad_token_id] = -100
        loss = model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-steps", type=int, default=600)
    args = parser.parse_args()
    tokenizer = train_tokenizer(args.vocab_size)
    model = build_model(len(tokenizer), args.seed)
    loss = pretrain(model, tokenizer, args.pretrain_steps, args.seed)
    print(f"pretrained {args.pretrain_steps} steps, final loss {loss:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    model.save_pretrained(args.out)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: vocab {len(tokenizer)}, {n_params:,} parameters, {size / 1024:.0f} KB on disk")


if __name__ == "__main__":
    main()
