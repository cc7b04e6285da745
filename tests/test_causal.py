"""ComPT on a decoder-only causal LM: the committed tiny Llama-architecture model (``tiny-causal``).

Loss, masks, generation and rank scores are checked against unpadded one-example passes through the backbone
(its own default positions), so a wrong column, mask or relative position changes the numbers; the position
ids themselves are asserted exactly (RoPE is blind to a constant offset such as the left padding). Generation
and rank scores are also checked on tiny random Qwen2, Mistral and GPT-2 models; GPT-2's learned absolute
positions do see such an offset.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaForCausalLM,
    MistralConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    ViTConfig,
)
from transformers.modeling_outputs import CausalLMOutputWithPast, Seq2SeqLMOutput

from compt import PromptBank, PromptBankConfig, load_backbone
from compt.cli import main
from compt.config.run_config import RunConfig
from compt.data.encode import Collator
from compt.errors import ConfigError
from compt.evaluation import Predictor
from compt.inference import export_peft, load_for_inference
from compt.models.backbone import CACHE_FIELD, TINY_CAUSAL_DIR, backbone_family
from compt.models.causal import CausalComptModel, position_ids, prompted_prefix
from compt.models.family import build_model
from compt.models.tokenization import encode_inputs, encode_targets, prepare_tokenizer
from compt.tasks import get_task
from compt.training.build import build_module
from compt.training.module import ComptModule
from tests.helpers import FAST, read_results, run_script
from tests.serving import Server, demo_rows, served_like_predict, sigterm_drains
from tests.test_configs import composed
from tests.test_predict_export import eval_rows

D = 64  # the tiny causal LM's hidden size
#: FAST (tests/helpers.py) on the tiny causal LM
CAUSAL_FAST = ["experiment=demo_causal", *FAST[1:]]
SST2 = "sst2: sentence: the film was fun"
STSB = "stsb: sentence1: a man is eating cake at home sentence2: a boy is eating cake"


def make_bank(method: str = "ssum", position: str = "after", **options) -> PromptBank:
    config = PromptBankConfig(
        method=method,
        task_names=["sst2", "stsb"],
        d_model=D,
        n_sources=3,
        source_length=2,
        position=position,
        **options,
    )
    return PromptBank(config, generator=torch.Generator().manual_seed(0)).eval()


def prepared(tiny_causal_backbone, method: str = "ssum", position: str = "after"):
    """The tiny causal LM with a fresh bank (evaluation mode, no dropout), its bank, tokenizer and the
    :data:`MIXED` batch."""
    backbone, tokenizer = tiny_causal_backbone
    bank = make_bank(method, position)
    model = CausalComptModel(backbone, bank, backbone_dropout=False).eval()
    return model, bank, tokenizer, make_batch(tokenizer, MIXED)


def make_batch(tokenizer, rows: list[tuple[int, str, str]]) -> dict[str, torch.Tensor]:
    """A collated mixed-task batch from ``(task id, text, answer)`` rows, encoded as training data is."""
    inputs = encode_inputs(tokenizer, [text for _, text, _ in rows])
    targets = encode_targets(tokenizer, [answer for _, _, answer in rows])
    examples = [{"input_ids": x, "labels": y, "task_id": t} for x, y, (t, _, _) in zip(inputs, targets, rows)]
    return Collator(tokenizer.pad_token_id)(examples)


MIXED = [(0, SST2, "positive"), (1, STSB, "3.8"), (0, "sst2: sentence: dull", "negative")]


def reference_log_probs(backbone, text_ids, prompt, answer, position: str) -> torch.Tensor:
    """Log-probabilities ``(m,)`` of each answer token from one unpadded pass over ``[prompt] text [prompt]
    answer`` with the backbone's default positions."""
    embed = backbone.get_input_embeddings()
    text = embed(torch.tensor([text_ids]))
    parts = [text, prompt[None]] if position == "after" else [prompt[None], text]
    prefix = torch.cat(parts, 1)
    sequence = torch.cat([prefix, embed(torch.tensor([answer]))], 1)
    log_probs = torch.log_softmax(backbone(inputs_embeds=sequence).logits[0].float(), -1)
    start = prefix.shape[1] - 1
    return log_probs[start : start + len(answer)].gather(1, torch.tensor(answer)[:, None])[:, 0]


def example_parts(batch, row: int, bank: PromptBank, mask: str = "total"):
    """Text ids, the example's (kept) prompt rows and answer ids of batch row ``row``."""
    text = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
    answer = batch["labels"][row][batch["labels"][row] != -100].tolist()
    task = int(batch["task_ids"][row])
    with torch.no_grad():
        prompts, rows = bank(mask)
    prompt = prompts[task] if rows is None else prompts[task][rows[task].bool()]
    return text, prompt, answer


# ---------------------------------------------------------------------------------------------- loading
def test_the_tiny_causal_model_loads_through_from_pretrained_with_eos_as_pad(
    tiny_causal_backbone, tiny_backbone
):
    backbone, tokenizer = tiny_causal_backbone
    assert isinstance(backbone, LlamaForCausalLM) and backbone_family(backbone) == "causal"
    assert all(not p.requires_grad for p in backbone.parameters())
    saved = json.loads((TINY_CAUSAL_DIR / "tokenizer_config.json").read_text())
    assert "pad_token" not in saved  # like most causal LMs; compt pads with EOS
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert sum(f.stat().st_size for f in TINY_CAUSAL_DIR.iterdir()) < 1_000_000
    assert backbone_family(tiny_backbone[0]) == "seq2seq"
    with pytest.raises(ConfigError, match="neither an encoder-decoder"):
        backbone_family(ViTConfig())


def test_a_tokenizer_whose_special_tokens_lie_outside_the_embedding_is_refused(tmp_path):
    backbone, tokenizer = load_backbone("tiny-causal")
    tokenizer.add_special_tokens({"pad_token": "<pad>"})  # a new id, one past the model's 207 embedding rows
    backbone.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(
        ConfigError, match=r"pad token '<pad>' the id 207, but the model's embedding has 207 rows"
    ):
        load_backbone(str(tmp_path))


def test_a_causal_backbone_needs_the_causal_model_class(tiny_causal_backbone, tiny_backbone):
    from compt import ComptModel

    with pytest.raises(ValueError, match="build_model"):
        ComptModel(tiny_causal_backbone[0], make_bank())
    bank = make_bank()
    assert isinstance(build_model(tiny_causal_backbone[0], bank), CausalComptModel)
    assert bank.config.backbone_family == "causal"
    with pytest.raises(ValueError, match="trained on a causal backbone"):
        build_model(tiny_backbone[0], bank)  # same hidden size, wrong family


# ---------------------------------------------------------------------------------------------- tokenisation
def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE (no BOS added, no pad), trained here on the demo task words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = [w for name in ("sst2", "rte", "mnli") for w in get_task(name).label_words]
    backend.train_from_iterator([SST2, STSB, " ".join(words)] * 20, trainer)
    eos = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=eos, eos_token=eos)


@pytest.mark.parametrize("kind", ["tiny", "byte_level"])
def test_labels_are_tokenised_as_they_follow_the_text_then_eos(tiny_causal_backbone, kind):
    tokenizer = (
        tiny_causal_backbone[1] if kind == "tiny" else prepare_tokenizer(byte_level_tokenizer(), "causal")
    )
    bos = [tokenizer.bos_token_id] if kind == "tiny" else []  # GPT-2 style: a BOS token that is never added
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    for task in ("sst2", "rte", "mnli", "stsb"):
        words = get_task(task).candidates()
        targets = encode_targets(tokenizer, words)
        [text] = encode_inputs(tokenizer, [SST2])
        assert text[: len(bos)] == bos and tokenizer.eos_token_id not in text
        for word, target in zip(words, targets):
            assert target[-1] == tokenizer.eos_token_id
            # the answer's ids are exactly what the tokenizer makes of "text answer" after the text's ids
            assert tokenizer(f"{SST2} {word}").input_ids == text + target[:-1]
            if kind == "tiny" and task != "stsb":
                assert len(target) == 2  # every label word is one token after a space
    if kind == "byte_level":
        assert tokenizer.decode(encode_targets(tokenizer, ["positive"])[0][:-1]) == " positive"


def test_seq2seq_tokenisation_is_the_tokenizers_own(tiny_tokenizer):
    texts = [SST2, STSB]
    assert (
        encode_inputs(tiny_tokenizer, texts, 12)
        == tiny_tokenizer(texts, truncation=True, max_length=12).input_ids
    )
    assert (
        encode_targets(tiny_tokenizer, ["positive", "3.8"]) == tiny_tokenizer(["positive", "3.8"]).input_ids
    )


# ---------------------------------------------------------------------------------------------- layout
def _marked():
    """Two texts of 4 and 2 tokens (right-padded), rows tagged 1..8; prompts tagged -10..-40."""
    embeds = torch.arange(1, 9, dtype=torch.float).reshape(2, 4, 1)
    attention = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    prompts = -torch.arange(1, 5, dtype=torch.float).reshape(2, 2, 1) * 10
    return embeds, attention, prompts


@pytest.mark.parametrize(
    ("position", "prompt_mask", "row0", "row1_real", "mask"),
    [
        ("after", None, [1, 2, 3, 4, -10, -20], [5, 6, -30, -40], [[1] * 6, [0, 0, 1, 1, 1, 1]]),
        ("before", None, [-10, -20, 1, 2, 3, 4], [-30, -40, 5, 6], [[1] * 6, [0, 0, 1, 1, 1, 1]]),
        # a masked prompt row leaves the sequence: it joins the left padding
        (
            "before",
            [[1, 0], [1, 1]],
            [-20, -10, 1, 2, 3, 4],
            [-30, -40, 5, 6],
            [[0] + [1] * 5, [0, 0] + [1] * 4],
        ),
        (
            "after",
            [[0, 1], [1, 1]],
            [-10, 1, 2, 3, 4, -20],
            [5, 6, -30, -40],
            [[0] + [1] * 5, [0, 0] + [1] * 4],
        ),
    ],
)
def test_the_prefix_is_left_padded_with_the_prompt_before_or_after_the_text(
    position, prompt_mask, row0, row1_real, mask
):
    embeds, attention, prompts = _marked()
    given = None if prompt_mask is None else torch.tensor(prompt_mask)
    out, out_mask = prompted_prefix(embeds, attention, prompts, given, position)
    assert out[0, :, 0].tolist() == row0
    assert out[1, 2:, 0].tolist() == row1_real  # every row ends in the last column
    assert out_mask.tolist() == mask
    for row, n in enumerate(sum(m) for m in mask):  # positions 0, 1, ... over the attended columns
        assert position_ids(out_mask)[row].tolist() == [0] * (6 - n) + list(range(n))


@pytest.mark.parametrize("position", ["after", "before"])
def test_a_mixed_task_batch_gets_each_tasks_prompt_in_its_slot(tiny_causal_backbone, position):
    model, bank, tokenizer, batch = prepared(tiny_causal_backbone, "ssum", position)
    backbone = model.backbone
    with torch.no_grad():
        prefix, mask = model.prompted_inputs(batch["input_ids"], batch["attention_mask"], batch["task_ids"])
    width = batch["input_ids"].shape[1] + bank.prompt_length
    assert prefix.shape == (3, width, D)
    for row in range(3):
        text, prompt, _ = example_parts(batch, row, bank)
        assert text[0] == tokenizer.bos_token_id and tokenizer.eos_token_id not in text
        tokens = backbone.get_input_embeddings()(torch.tensor(text))
        expected = torch.cat([tokens, prompt] if position == "after" else [prompt, tokens])
        n = len(expected)
        assert mask[row].tolist() == [0] * (width - n) + [1] * n  # left padding
        torch.testing.assert_close(prefix[row, width - n :], expected)
        assert position_ids(mask)[row, width - n :].tolist() == list(range(n))


def other_architecture(name: str, vocab_size: int) -> PreTrainedModel:
    """A tiny randomly initialised causal LM of another family (hidden size D, the tiny tokenizer's vocabulary,
    its BOS and EOS), frozen and in evaluation mode: other position schemes (GPT-2's learned absolute
    positions, Mistral's sliding window) and cache classes than Llama's."""
    shared = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=1)
    heads = dict(hidden_size=D, intermediate_size=2 * D, num_hidden_layers=2, num_attention_heads=4)
    config = {
        "qwen2": lambda: Qwen2Config(**shared, **heads, num_key_value_heads=2),
        "mistral": lambda: MistralConfig(**shared, **heads, num_key_value_heads=2, sliding_window=64),
        "gpt2": lambda: GPT2Config(**shared, n_embd=D, n_layer=2, n_head=4, n_positions=256),
    }[name]()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).requires_grad_(False).eval()


@pytest.mark.parametrize(
    "architecture, position", [("llama", "after"), ("llama", "before"), ("gpt2", "after"), ("gpt2", "before")]
)
def test_the_loss_is_the_cross_entropy_of_the_answer_tokens_only(
    tiny_causal_backbone, architecture, position
):
    backbone, tokenizer = tiny_causal_backbone
    if architecture != "llama":
        backbone = other_architecture(architecture, len(tokenizer))
    model, bank, tokenizer, batch = prepared((backbone, tokenizer), "ssum", position)
    backbone = model.backbone
    assert (batch["labels"] != -100).sum(1).tolist() == [2, 3, 2]  # "3.8" is "▁3." "8", then EOS
    loss = model(batch["input_ids"], batch["attention_mask"], batch["task_ids"], batch["labels"])
    with torch.no_grad():
        reference = torch.cat(
            [reference_log_probs(backbone, *example_parts(batch, row, bank), position) for row in range(3)]
        )
    assert loss.item() == pytest.approx(-reference.mean().item(), abs=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in bank.parameters())
    assert all(p.grad is None for p in backbone.parameters())


def test_mcat_masks_take_the_dropped_sources_out_of_attention(tiny_causal_backbone):
    model, bank, tokenizer, batch = prepared(tiny_causal_backbone, "mcat")  # 3 sources x 2 rows
    backbone = model.backbone
    args = batch["input_ids"], batch["attention_mask"], batch["task_ids"]
    with torch.no_grad():
        _, full = model.prompted_inputs(*args)
        _, masked = model.prompted_inputs(*args, mask="src1")
        logits = model.answer_logits(*args, batch["labels"], mask="src1")
    assert (full.sum(1) - masked.sum(1)).tolist() == [4, 4, 4]  # src0 and src2: 2 rows each
    for row in range(3):  # the masked prompt behaves exactly as a prompt without those rows
        text, prompt, answer = example_parts(batch, row, bank, mask="src1")
        assert len(prompt) == 2
        expected = reference_log_probs(backbone, text, prompt, answer, "after")
        got = torch.log_softmax(logits[row, : len(answer)].float(), -1).gather(
            1, torch.tensor(answer)[:, None]
        )
        torch.testing.assert_close(got[:, 0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pass_cost", [0, 10**6])  # a pass per candidate length / one padded pass
@pytest.mark.parametrize("architecture", ["llama", "qwen2", "mistral", "gpt2"])
def test_cached_generation_and_rank_scores_equal_unpadded_references(
    tiny_causal_backbone, architecture, pass_cost, monkeypatch
):
    monkeypatch.setattr("compt.models.candidates.PASS_COST_POSITIONS", pass_cost)
    backbone, tokenizer = tiny_causal_backbone
    if architecture != "llama":
        backbone = other_architecture(architecture, len(tokenizer))
    model, bank, tokenizer, batch = prepared((backbone, tokenizer), "ssum")
    backbone = model.backbone
    args = batch["input_ids"], batch["attention_mask"], batch["task_ids"]
    generated = model.generate(*args, max_new_tokens=6)
    candidates = Predictor([get_task("sst2"), get_task("stsb")], tokenizer, "rank").candidates
    scores = model.score_candidates(*args, candidates[batch["task_ids"]])
    embed = backbone.get_input_embeddings()
    with torch.no_grad():
        for row in range(3):
            text, prompt, _ = example_parts(batch, row, bank)
            sequence = torch.cat([embed(torch.tensor([text])), prompt[None]], 1)
            tokens: list[int] = []
            while len(tokens) < 6 and tokenizer.eos_token_id not in tokens:  # greedy, no cache, no padding
                tokens.append(int(backbone(inputs_embeds=sequence).logits[0, -1].argmax()))
                sequence = torch.cat([sequence, embed(torch.tensor([[tokens[-1]]]))], 1)
            assert generated[row, : len(tokens)].tolist() == tokens
            assert set(generated[row, len(tokens) :].tolist()) <= {tokenizer.pad_token_id}
            for index, candidate in enumerate(candidates[batch["task_ids"][row]]):
                answer = candidate[candidate != -100].tolist()
                if answer:
                    expected = reference_log_probs(backbone, text, prompt, answer, "after").sum()
                    assert scores[row, index].item() == pytest.approx(expected.item(), abs=1e-4)
    assert torch.isinf(scores[0, 2:]).all() and torch.isfinite(scores[1]).all()  # sst2 has 2 candidates


def test_the_kv_cache_has_one_name_in_this_transformers_release_for_both_families():
    """``cache`` in recent releases, ``past_key_values`` before: compt passes and reads it under the name the
    installed release uses (transformers 5.0 and 5.17 were checked by hand), the same for seq2seq and causal."""
    assert CACHE_FIELD in ("cache", "past_key_values")
    for output in (CausalLMOutputWithPast, Seq2SeqLMOutput):
        assert CACHE_FIELD in output.__dataclass_fields__


def test_the_dropout_switch_covers_llama_attention_dropout(tiny_causal_backbone):
    backbone, _ = tiny_causal_backbone
    attention = [m for m in backbone.modules() if isinstance(getattr(m, "attention_dropout", None), float)]
    CausalComptModel(backbone, make_bank(), backbone_dropout=False)
    assert len(attention) == 4 and all(m.attention_dropout == 0.0 for m in attention)
    CausalComptModel(backbone, make_bank(), backbone_dropout=True)
    assert all(m.attention_dropout == 0.1 for m in attention)


# ---------------------------------------------------------------------------------------------- export
def test_exported_causal_peft_adapter_gives_compt_logits(tmp_path):
    """A bank trained with the prompt before the text, as a CAUSAL_LM prompt-tuning adapter; the bank does not
    record its family (it never met its backbone), so export reads it from the backbone's config."""
    from peft import PeftModel

    bank = make_bank("mcat", "before", backbone="tiny-causal")
    bank_dir = bank.save(tmp_path / "bank")
    out = export_peft(bank_dir, "sst2", tmp_path / "adapter")
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and adapter["num_virtual_tokens"] == bank.prompt_length
    assert "AutoModelForCausalLM" in (out / "README.md").read_text()
    backbone, tokenizer = load_backbone("tiny-causal")  # a fresh copy: PEFT wraps it
    model = CausalComptModel(backbone, PromptBank.load(bank_dir), backbone_dropout=False).eval()
    rows = [(0, SST2, "positive"), (0, "sst2: sentence: dull", "negative")]
    batch = make_batch(tokenizer, rows)
    with torch.no_grad():
        expected = model.answer_logits(
            batch["input_ids"], batch["attention_mask"], batch["task_ids"], batch["labels"]
        )
        peft_model = PeftModel.from_pretrained(backbone, str(out)).eval()
        for row, (_, text, answer) in enumerate(rows):  # PEFT: [prompt] [BOS] text answer, unpadded
            ids = encode_inputs(tokenizer, [text])[0] + encode_targets(tokenizer, [answer])[0]
            logits = peft_model(input_ids=torch.tensor([ids])).logits[0]
            n_answer = int((batch["labels"][row] != -100).sum())
            torch.testing.assert_close(
                logits[-n_answer - 1 : -1], expected[row, :n_answer], atol=1e-5, rtol=0
            )


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The causal demo, fully trained, evaluated by greedy generation."""
    run_dir = tmp_path_factory.mktemp("causal_demo") / "run"
    proc = run_script(
        "train.py",
        "experiment=demo_causal",
        "eval.mode=generate",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    )
    return run_dir, proc


@pytest.mark.slow
def test_the_causal_demo_learns_its_tasks_through_the_prompts_alone(trained):
    run_dir, proc = trained
    results = read_results(run_dir)
    assert results["config"]["model"]["name"] == "tiny-causal"
    assert results["primary"]["mnli"] >= 90 and results["primary"]["sst2"] >= 80, proc.stdout[-2000:]
    assert results["invalid"]["mnli"] == 0 and results["invalid"]["sst2"] == 0
    # the same bank, untrained: greedy generation copies words, every mnli answer is invalid
    trained_bank = PromptBank.load(run_dir / "bank")
    predictor = load_for_inference(run_dir, device="cpu")
    backbone = predictor.model.backbone
    untrained = PromptBank(
        trained_bank.config, backbone.get_input_embeddings().weight, torch.Generator().manual_seed(1)
    )
    predictor.model = CausalComptModel(backbone, untrained, backbone_dropout=False).eval()
    answers = predictor.predict(eval_rows("mnli", results), "mnli", mode="generate")
    assert sum(a["valid"] for a in answers) == 0, [a["prediction"] for a in answers[:5]]


@pytest.mark.slow
def test_predict_reproduces_the_run_and_rank_agrees_with_generation(trained):
    run_dir, _ = trained
    results = read_results(run_dir)
    stored = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    predictor = load_for_inference(run_dir, device="cpu")  # the saved bank on a freshly loaded backbone
    assert predictor.mode == "generate"
    for task in ("sst2", "rte", "mnli"):
        generated = predictor.predict(eval_rows(task, results), task)
        ranked = predictor.predict(eval_rows(task, results), task, mode="rank")
        theirs = sorted((p for p in stored if p["task"] == task), key=lambda p: p["example_id"])
        assert [g["prediction"] for g in generated] == [t["prediction"] for t in theirs]
        assert [r["prediction"] for r in ranked] == [g["prediction"] for g in generated]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The demo sweep over the three ComPT methods, one epoch each, 7 evaluation examples per task."""
    folder = tmp_path_factory.mktemp("causal_sweep")
    run_script(
        "train.py",
        "-m",
        *CAUSAL_FAST,
        "method=ssum,msum,mcat",
        "optim.epochs=1",
        "eval.max_samples=7",
        f"hydra.sweep.dir={folder}",
    )
    return folder


def _job(sweep, method: str):
    [job] = [p.parent for p in sweep.glob(f"*method={method}*/results.json")]
    return job


@pytest.mark.slow
def test_a_causal_demo_sweep_ends_in_a_report(sweep, tmp_path):
    jobs = sorted(p.parent for p in sweep.glob("*/results.json"))
    assert len(jobs) == 3
    for job in jobs:
        results = read_results(job)
        assert results["status"] == "complete" and results["global_step"] == 4
        assert results["counts"] == {t: 7 for t in results["tasks"]}
        assert PromptBank.load(job / "bank").config.backbone_family == "causal"
    assert main(["report", str(sweep), "--out", str(tmp_path / "report"), "--quiet", "--no-plots"]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert all(method in markdown for method in ("ssum", "msum", "mcat"))


@pytest.mark.slow
def test_a_causal_run_continues_from_its_checkpoint_and_reevaluates_under_masks(sweep, tmp_path):
    run_dir = tmp_path / "mcat"
    shutil.copytree(_job(sweep, "mcat"), run_dir)
    (run_dir / "results.json").unlink()  # as if the run had been stopped after its last checkpoint
    overrides = [*CAUSAL_FAST, "method=mcat", "eval.max_samples=7", f"hydra.run.dir={run_dir}"]
    proc = run_script("train.py", *overrides, "optim.epochs=2")
    assert "resuming from" in proc.stdout
    results = read_results(run_dir)
    assert results["global_step"] == 8
    assert [step for step, _ in results["curves"]["train_loss"]] == [4, 8]
    assert main(["evaluate", str(run_dir), "--masks", "total,src0", "--mode", "rank"]) == 0
    masks = json.loads((run_dir / "eval" / "masks.json").read_text())
    assert set(masks) == {"total", "src0"} and masks["src0"]["counts"] == results["counts"]


@pytest.mark.slow
def test_two_process_ddp_evaluates_every_example_once_like_one_process(sweep, tmp_path):
    run_dir = tmp_path / "ddp"
    cpu_ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    run_script(
        "train.py", *CAUSAL_FAST, "optim.epochs=1", "eval.max_samples=7", *cpu_ddp, f"hydra.run.dir={run_dir}"
    )
    single = _job(sweep, "ssum")
    results, reference = read_results(run_dir), read_results(single)
    assert results["counts"] == reference["counts"] == {t: 7 for t in reference["tasks"]}
    assert results["global_step"] == 2  # 64 examples / (batch 16 x 2 ranks)

    def examples(folder):
        lines = (folder / "predictions.jsonl").read_text().splitlines()
        return sorted((p["task"], p["example_id"]) for p in map(json.loads, lines))

    assert examples(run_dir) == examples(single)


@pytest.mark.gpu
@pytest.mark.slow
def test_the_causal_demo_trains_with_trainer_gpu_in_bf16_mixed(tmp_path):
    run_dir = tmp_path / "run"
    run_script("train.py", *CAUSAL_FAST, "trainer=gpu", "eval.mode=generate", f"hydra.run.dir={run_dir}")
    results = read_results(run_dir)
    assert results["config"]["trainer"]["precision"] == "bf16-mixed" and results["global_step"] == 8
    assert all(loss == loss for _, loss in results["curves"]["train_loss"])  # no NaN under bf16


def t5_batch(module) -> dict[str, torch.Tensor]:
    """An sst2 and an stsb example for the T5 demo's module (tasks in the demo's order: sst2 = 0, stsb = 3)."""
    tokenizer = module.tokenizer
    inputs = tokenizer([SST2, STSB], padding=True, return_tensors="pt")
    labels = tokenizer(["positive", "3.8"], padding=True, return_tensors="pt").input_ids
    return {
        "input_ids": inputs.input_ids,
        "attention_mask": inputs.attention_mask,
        "task_ids": torch.tensor([0, 3]),
        "labels": labels.masked_fill(labels == tokenizer.pad_token_id, -100),
    }


@pytest.mark.parametrize("experiment", ["demo", "demo_causal"])
def test_bf16_backbone_weights_with_fp32_prompts(experiment):
    """``model.dtype=bf16``: the frozen weights in bfloat16, the bank and its gradients in fp32; the module's
    plain hyperparameters carry the dtype, so a checkpoint rebuilds it the same."""
    config = RunConfig.from_hydra(composed(f"experiment={experiment}", "model.dtype=bf16"))
    module = build_module(config)
    model = module.model
    # (some transformers releases keep T5's feed-forward output projection in fp32: its _keep_in_fp32_modules)
    assert model.backbone.get_input_embeddings().weight.dtype == torch.bfloat16
    assert {p.dtype for p in model.bank.parameters()} == {torch.float32}
    batch = make_batch(module.tokenizer, MIXED) if experiment == "demo_causal" else t5_batch(module)
    loss = model.train()(batch["input_ids"], batch["attention_mask"], batch["task_ids"], batch["labels"])
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.bank.parameters())
    generated = model.eval().generate(batch["input_ids"], batch["attention_mask"], batch["task_ids"], 4)
    assert generated.shape[0] == len(batch["input_ids"])
    assert module.hparams["backbone_dtype"] == "bf16"
    rebuilt = ComptModule(**module.hparams)
    assert next(rebuilt.model.backbone.parameters()).dtype == torch.bfloat16


def count_forward_calls(backbone: PreTrainedModel) -> list[int]:
    """A list that grows by one at each run of the first transformer layer's feed-forward ``forward`` (T5: the
    encoder's first block), its recomputation in the backward pass included (module hooks do not see that)."""
    encoder_decoder = backbone.config.is_encoder_decoder
    module = backbone.encoder.block[0].layer[-1] if encoder_decoder else backbone.model.layers[0].mlp
    calls: list[int] = []
    forward = module.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    module.forward = counted
    return calls


@pytest.mark.parametrize("experiment", ["demo", "demo_causal"])
def test_activation_checkpointing_recomputes_layers_and_keeps_loss_and_gradients(experiment):
    """The first layer's feed-forward runs again in the backward pass; the loss and the bank's gradients are
    unchanged."""
    batch = None
    results = []
    for checkpointing in (False, True):
        overrides = [f"experiment={experiment}", "model.dropout=false"]
        module = build_module(
            RunConfig.from_hydra(composed(*overrides, f"model.activation_checkpointing={checkpointing}"))
        )
        model = module.model.train()
        if batch is None:
            batch = make_batch(module.tokenizer, MIXED) if experiment == "demo_causal" else t5_batch(module)
        calls = count_forward_calls(model.backbone)
        torch.manual_seed(0)  # the same router sample and prompt-encoder dropout in both runs
        loss = model(batch["input_ids"], batch["attention_mask"], batch["task_ids"], batch["labels"])
        forward_calls = len(calls)
        loss.backward()
        results.append(
            (loss.detach(), [p.grad.clone() for p in model.bank.parameters() if p.grad is not None])
        )
        assert len(calls) == forward_calls * (2 if checkpointing else 1)
        assert module.hparams["activation_checkpointing"] is checkpointing
    (loss, grads), (loss_ckpt, grads_ckpt) = results
    assert torch.allclose(loss, loss_ckpt) and len(grads) == len(grads_ckpt) > 0
    assert all(torch.allclose(g, h, atol=1e-6) for g, h in zip(grads, grads_ckpt))


# ---------------------------------------------------------------------------------------------- compt serve
@pytest.fixture(scope="module")
def causal_server(trained, tmp_path_factory):
    """``compt serve`` of the causal demo on a free port of 127.0.0.1; it waits up to 2 s to fill batches of
    50 rows (the burst's 50 rows of one mode arrive together; the drain test's requests stay in flight)."""
    run_dir, _ = trained
    folder = tmp_path_factory.mktemp("serve")
    server = Server(run_dir, folder / "serve.log", "--max-batch-size", "50", "--max-wait-ms", "2000")
    yield server, folder
    server.stop()


@pytest.mark.slow
def test_a_burst_of_mixed_requests_is_served_as_compt_predict_answers_it(trained, causal_server):
    server, folder = causal_server
    assert served_like_predict(trained[0], server, folder, clients=50)["mode"] == "generate"


@pytest.mark.slow
def test_sigterm_drains_the_requests_in_flight_and_exits_0(trained, causal_server):
    server, _ = causal_server
    rows = demo_rows(2)[:6]
    answers = load_for_inference(trained[0], device="cpu").predict(rows)  # the run's mode: generate
    sigterm_drains(server, rows, [{**a, "index": 0} for a in answers])
