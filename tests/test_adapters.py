"""method=lora and method=prefix: PEFT adapters in a prompt bank's place (compt.adapters), checked against PEFT's
own forward pass on both tiny backbones. (End to end, through train.py: tests/test_adapters_e2e.py.)"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest
import torch
import yaml

from compt import PromptBankConfig, build_model, load_backbone
from compt.adapters.options import LoraOptions, PrefixOptions, adapter_options
from compt.adapters.peft_setup import PEFT_FILES, require_peft
from compt.data.encode import Collator
from compt.errors import ConfigError, InferenceError
from compt.models.tokenization import encode_inputs, encode_targets
from compt.prompts.bank import CONFIG_FILE, PromptBank, new_bank
from tests.helpers import REPO_ROOT

#: PEFT's forward passes its prefix under the old name of transformers' cache argument (its own affair)
pytestmark = pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")

MODELS = {"seq2seq": "tiny", "causal": "tiny-causal"}
ROWS = [
    ("sst2: sentence: a fine movie indeed it is", "positive"),
    ("rte: sentence1: hi sentence2: hello there", "not_entailment"),
    ("sst2: sentence: dull", "negative"),
]


def adapter_model(family: str, method: str, seed: int = 1, **options):
    """A fresh tiny backbone (PEFT wraps it in place) with a new ``method`` adapter, its weights moved off their
    initial values (LoRA's B starts at zero), in eval mode."""
    backbone, tokenizer = load_backbone(MODELS[family])
    config = PromptBankConfig(
        method=method,
        task_names=["sst2", "rte"],
        d_model=backbone.get_input_embeddings().embedding_dim,
        backbone=MODELS[family],
        adapter=options or None,
    )
    bank = new_bank(config, generator=torch.Generator().manual_seed(seed))
    model = build_model(backbone, bank, backbone_dropout=False).eval()
    with torch.no_grad():
        for parameter in bank.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(7)) * 0.3)
    return model, tokenizer


def batch(tokenizer) -> dict[str, torch.Tensor]:
    inputs = encode_inputs(tokenizer, [text for text, _ in ROWS])
    targets = encode_targets(tokenizer, [answer for _, answer in ROWS])
    examples = [{"input_ids": x, "labels": y, "task_id": 0} for x, y in zip(inputs, targets)]
    return Collator(tokenizer.pad_token_id)(examples)


def peft_logits(model, tokenizer, text: str, answer: list[int]) -> torch.Tensor:
    """PEFT's forward on one unpadded example: the logits ``(m, V)`` that predict the answer's m tokens."""
    peft = model.bank.peft
    ids = encode_inputs(tokenizer, [text])[0]
    if model.family == "seq2seq":
        decoder = model.backbone.prepare_decoder_input_ids_from_labels(labels=torch.tensor([answer]))
        return peft(input_ids=torch.tensor([ids]), decoder_input_ids=decoder).logits[0]
    return peft(input_ids=torch.tensor([ids + answer])).logits[0, len(ids) - 1 : len(ids) + len(answer) - 1]


def peft_greedy(model, tokenizer, text: str, steps: int) -> list[int]:
    """Greedy decoding by PEFT's forward pass alone (no cache, one unpadded example)."""
    peft, ids = model.bank.peft, encode_inputs(tokenizer, [text])[0]
    start = [model.backbone.config.decoder_start_token_id] if model.family == "seq2seq" else []
    out: list[int] = []
    for _ in range(steps):
        if model.family == "seq2seq":
            logits = peft(input_ids=torch.tensor([ids]), decoder_input_ids=torch.tensor([start + out])).logits
        else:
            logits = peft(input_ids=torch.tensor([ids + out])).logits
        out.append(int(logits[0, -1].argmax()))
        if out[-1] == tokenizer.eos_token_id:
            break
    return out


CASES = [(family, method) for family in MODELS for method in ("lora", "prefix")]


@pytest.mark.parametrize(("family", "method"), CASES)
def test_loss_rank_scores_and_generation_are_peft_forwards(family, method):
    """compt's padded, cached batches give what PEFT's own forward gives on each example alone: the loss, the rank
    score of every answer, greedy decoding (the prefix reaches every path: training, generation, scoring)."""
    model, tokenizer = adapter_model(family, method)
    b = batch(tokenizer)
    with torch.no_grad():
        token_losses, expected_scores = [], []
        for row, (text, _) in enumerate(ROWS):
            answer = [t for t in b["labels"][row].tolist() if t != -100]
            log_probs = torch.log_softmax(peft_logits(model, tokenizer, text, answer).float(), -1)
            token = log_probs.gather(1, torch.tensor(answer)[:, None])[:, 0]
            token_losses.append(-token)
            expected_scores.append(token.sum())
        loss = model(b["input_ids"], b["attention_mask"], b["task_ids"], b["labels"])
        torch.testing.assert_close(loss, torch.cat(token_losses).mean(), atol=1e-4, rtol=0)
        candidates = torch.stack([b["labels"], b["labels"].roll(1, 0)], 1)  # (B, 2, M): own answer first
        scores = model.score_candidates(b["input_ids"], b["attention_mask"], b["task_ids"], candidates)
        torch.testing.assert_close(scores[:, 0], torch.stack(expected_scores), atol=1e-4, rtol=0)
        generated = model.generate(b["input_ids"], b["attention_mask"], b["task_ids"], 4)
    for row, (text, _) in enumerate(ROWS):
        mine = generated[row].tolist()[1:] if family == "seq2seq" else generated[row].tolist()
        reference = peft_greedy(model, tokenizer, text, 4)
        assert mine[: len(reference)] == reference


@pytest.mark.parametrize(("family", "method"), CASES)
def test_the_banks_parameters_are_those_peft_trains(family, method):
    model, _ = adapter_model(family, method)
    bank = model.bank
    count = sum(p.numel() for p in bank.parameters())
    assert count == bank.peft.get_nb_trainable_parameters()[0] == bank.trainable_count() > 0
    assert all(p.requires_grad for p in bank.parameters())
    groups = bank.parameter_groups()
    assert sum(p.numel() for p in groups["adapter"]) == count and not groups["private"]
    assert bank.prompt_length == 0 and bank.router is None
    with pytest.raises(ConfigError, match="only 'total'"):
        bank("src0")
    # the backbone's own weights stay frozen, and a checkpoint's bank keys carry the adapter
    assert not [n for n, p in model.backbone.named_parameters() if p.requires_grad and "lora_" not in n]
    assert {k.split(".")[0] for k in bank.state_dict()} == {"adapter"}


def test_the_seed_decides_the_adapter_whatever_the_global_random_state():
    torch.manual_seed(0)
    first, _ = adapter_model("causal", "lora", seed=3)
    torch.manual_seed(99)
    second, _ = adapter_model("causal", "lora", seed=3)
    other, _ = adapter_model("causal", "lora", seed=4)
    a, b, c = (m.bank.state_dict() for m in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


def test_options_reach_peft(tmp_path):
    model, _ = adapter_model("seq2seq", "lora", lora_r=4, lora_alpha=8, lora_target_modules=["q"])
    config = model.bank.peft.peft_config["default"]
    assert (config.r, config.lora_alpha, set(config.target_modules)) == (4, 8, {"q"})
    assert all("/q/lora_" in name for name in model.bank.adapter)  # PEFT's names, dots written as "/"
    model, _ = adapter_model("causal", "prefix", prefix_length=5, prefix_projection=True, prefix_hidden=16)
    config = model.bank.peft.peft_config["default"]
    assert (config.num_virtual_tokens, config.prefix_projection, config.encoder_hidden_size) == (5, True, 16)
    assert model.bank.kv_prefix(2).get_seq_length() == 5


@pytest.mark.parametrize(("family", "method"), CASES)
def test_a_saved_adapter_is_pefts_and_loads_back_for_prediction_and_evaluation(tmp_path, family, method):
    model, tokenizer = adapter_model(family, method)
    model.bank.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {*PEFT_FILES, CONFIG_FILE}
    assert json.loads((tmp_path / PEFT_FILES[0]).read_text())["peft_type"] == {"lora": "LORA"}.get(
        method, "PREFIX_TUNING"
    )
    b = batch(tokenizer)
    with torch.no_grad():
        expected = model(b["input_ids"], b["attention_mask"], b["task_ids"], b["labels"])
        saved = PromptBank.load(tmp_path)  # PEFT's from_pretrained once it meets a backbone (compt predict)
        backbone, _ = load_backbone(MODELS[family])
        reloaded = build_model(backbone, saved, backbone_dropout=False).eval()
        assert reloaded(b["input_ids"], b["attention_mask"], b["task_ids"], b["labels"]) == pytest.approx(
            float(expected), abs=1e-5
        )
        # compt evaluate: the saved weights into a freshly built (trainable) adapter
        fresh, _ = adapter_model(family, method, seed=5)
        fresh.bank.load_state_dict(PromptBank.load(tmp_path).state_dict())
        again = fresh(b["input_ids"], b["attention_mask"], b["task_ids"], b["labels"])
    assert float(again) == pytest.approx(float(expected), abs=1e-5)


def test_a_projected_prefix_is_saved_folded_and_reloads_for_inference_only(tmp_path):
    model, tokenizer = adapter_model("causal", "prefix", prefix_projection=True, prefix_hidden=16)
    model.bank.save(tmp_path)
    b = batch(tokenizer)
    with torch.no_grad():
        expected = model(b["input_ids"], b["attention_mask"], b["task_ids"], b["labels"])
        backbone, _ = load_backbone("tiny-causal")
        reloaded = build_model(backbone, PromptBank.load(tmp_path), backbone_dropout=False).eval()
        assert float(
            reloaded(b["input_ids"], b["attention_mask"], b["task_ids"], b["labels"])
        ) == pytest.approx(float(expected), abs=1e-5)
    fresh, _ = adapter_model("causal", "prefix", prefix_projection=True, prefix_hidden=16)
    with pytest.raises(InferenceError, match="from a checkpoint"):
        fresh.bank.load_state_dict(PromptBank.load(tmp_path).state_dict())


def test_a_damaged_saved_adapter_is_one_clear_error(tmp_path):
    model, _ = adapter_model("seq2seq", "lora")
    model.bank.save(tmp_path)
    (tmp_path / PEFT_FILES[1]).write_bytes(b"not safetensors")
    with pytest.raises(InferenceError, match="damaged"):
        PromptBank.load(tmp_path)


def test_adapter_options_belong_to_their_method():
    assert PromptBankConfig(method="lora", task_names=["rte"]).adapter == LoraOptions()
    assert PromptBankConfig(method="prefix", task_names=["rte"]).adapter == PrefixOptions()
    assert PromptBankConfig(method="ssum", task_names=["rte"]).adapter is None
    assert adapter_options("ssum", {"lora_r": LoraOptions.lora_r}) is None  # a default counts as not given
    with pytest.raises(ConfigError, match=r"method.lora_r applies to method=lora only \(method='prefix'\)"):
        adapter_options("prefix", {"lora_r": 8})
    with pytest.raises(ConfigError, match="method.prefix_length applies to method=prefix only"):
        PromptBankConfig(method="ssum", task_names=["rte"], adapter={"prefix_length": 5})
    with pytest.raises(ConfigError, match="unknown adapter option"):
        adapter_options("lora", {"rank": 8})
    with pytest.raises(ConfigError, match="lora_r must be >= 1"):
        LoraOptions(lora_r=0)
    with pytest.raises(ConfigError, match="adapts nothing"):
        LoraOptions(lora_target_modules=[])
    config = PromptBankConfig(method="lora", task_names=["rte"], adapter={"lora_target_modules": ["q"]})
    assert (
        PromptBankConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    )  # a saved bank's JSON


def test_the_presets_state_the_cited_defaults():
    """conf/method/{lora,prefix}.yaml write each default (with its source) as the options classes hold it."""
    for method, options in (("lora", LoraOptions()), ("prefix", PrefixOptions())):
        preset = yaml.safe_load((REPO_ROOT / "conf" / "method" / f"{method}.yaml").read_text())
        stated = {k: v for k, v in preset.items() if k not in ("name", "epochs")}
        assert stated == {k: getattr(options, k) for k in stated} and len(stated) == len(vars(options))
        settings = yaml.safe_load((REPO_ROOT / "conf" / "method_settings" / f"{method}.yaml").read_text())
        assert settings["optim"]["lr"]["adapter"] > 0


def test_peft_missing_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[peft\]'"):
        require_peft("lora")


def test_masks_and_cross_prompts_are_refused_for_an_adapter_run():
    from compt.evaluation.config import EvalConfig
    from compt.optim import OptimConfig
    from compt.prompts.router import RouterSchedule
    from compt.tasks import get_task
    from compt.training.module import ComptModule

    config = PromptBankConfig(method="lora", task_names=["sst2", "rte"])
    args = (config, [get_task("sst2"), get_task("rte")], OptimConfig(), RouterSchedule())
    with pytest.raises(ConfigError, match="only 'total'"):
        ComptModule("tiny", *args, EvalConfig(masks=("total", "src0")), True, 1)
    with pytest.raises(ConfigError, match="leave eval.cross_prompts unset"):
        ComptModule("tiny", *args, EvalConfig(cross_prompts="rank"), True, 1)


def test_the_run_config_builds_the_adapter_from_its_keys():
    from compt.config.run_config import RunConfig
    from compt.config.schema import TrainSchema

    keys = {"model": {"name": "tiny"}, "tasks": {"rte": {}}}
    config = RunConfig.from_schema(TrainSchema.from_hydra({**keys, "method": {"name": "lora", "lora_r": 4}}))
    assert config.bank.adapter == LoraOptions(lora_r=4) and config.optim.lr_adapter == 3e-4
    schema = TrainSchema.from_hydra({**keys, "method": {"name": "ssum", "lora_r": 4}})
    with pytest.raises(ConfigError, match="method.lora_r applies to method=lora only"):
        RunConfig.from_schema(schema)


def test_report_rows_of_the_adapters_come_after_composition_methods(tmp_path):
    from compt.report.aggregate import group_runs, scan
    from tests.test_report import fake_results, write_run

    for method in ("prefix", "lora", "ssum", "pt"):
        write_run(tmp_path, method, fake_results(method, 16, 1, {"rte": 60.0}))
    groups = group_runs(scan([tmp_path], progress=False).runs)
    assert [g.settings["method"] for g in groups] == ["pt", "ssum", "lora", "prefix"]


def test_the_divergence_guard_watches_the_adapters_weights():
    from types import SimpleNamespace

    from compt.errors import RunDiverged
    from compt.training.divergence import DivergenceGuard
    from tests.test_recovery import _Strategy

    model, _ = adapter_model("causal", "lora")
    module = SimpleNamespace(device=torch.device("cpu"), bank=model.bank)
    trainer = SimpleNamespace(global_step=3, log_every_n_steps=4, strategy=_Strategy())
    guard = DivergenceGuard()
    guard.on_train_start(trainer, module)
    with torch.no_grad():
        next(iter(model.bank.adapter.values()))[0, 0] = float("nan")  # a LoRA weight, inside the backbone
    with pytest.raises(RunDiverged, match="at step 3"):
        guard.on_train_epoch_end(trainer, module)


def test_lora_trains_with_activation_checkpointing_and_prefix_says_it_cannot():
    from compt.models.backbone import checkpoint_activations

    losses = []
    for checkpointing in (False, True):
        backbone, tokenizer = load_backbone("tiny")
        if checkpointing:
            checkpoint_activations(backbone)
        config = PromptBankConfig(method="lora", task_names=["sst2"], adapter={"lora_dropout": 0.0})
        bank = new_bank(replace(config, d_model=64), generator=torch.Generator().manual_seed(1))
        model = build_model(backbone, bank, backbone_dropout=False).train()
        b = batch(tokenizer)
        loss = model(b["input_ids"], b["attention_mask"], b["task_ids"], b["labels"])
        loss.backward()
        losses.append((float(loss), [p.grad for p in bank.parameters()]))
    assert losses[0][0] == pytest.approx(losses[1][0], abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(losses[0][1], losses[1][1]))
    backbone, _ = load_backbone("tiny")
    checkpoint_activations(backbone)
    config = PromptBankConfig(method="prefix", task_names=["sst2"], d_model=64)
    with pytest.raises(ConfigError, match="model.activation_checkpointing=false"):
        build_model(backbone, new_bank(config))
