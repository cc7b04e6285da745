"""method=lora and method=prefix end to end on both tiny backbones: the demo trains them through train.py (same
data, mixing, evaluation and outputs as ComPT), the adapters learn, ``compt report`` puts them beside ComPT,
an exported adapter answers inside PEFT as ``compt predict`` does, and a killed LoRA run resumes to the same end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from compt import build_model, load_backbone
from compt.evaluation.config import EvalConfig
from compt.inference.export import export_peft
from compt.inference.predictor import PromptPredictor, load_for_inference
from compt.models.tokenization import encode_inputs, encode_targets
from compt.prompts.bank import PromptBank, new_bank
from compt.report.aggregate import group_runs, scan
from tests.helpers import REPO_ROOT, read_results, run_script
from tests.test_predict_export import eval_rows

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated")]

#: the demo as shipped (30 epochs, rank classification on 32 rows per task), a checkpoint at every epoch (the kill
#: test resumes the lora job) and deterministic kernels (bit-identical resumes)
COMMON = ["callbacks.checkpoint_every_n_epochs=1", "deterministic=true", "trainer.enable_progress_bar=false"]
EXPERIMENTS = {"seq2seq": "demo", "causal": "demo_causal"}
MODELS = {"seq2seq": "tiny", "causal": "tiny-causal"}
TASKS = ("sst2", "rte", "mnli")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The demo on both tiny backbones with method=lora,prefix: four jobs, one process."""
    folder = tmp_path_factory.mktemp("adapters")
    experiments = ",".join(EXPERIMENTS.values())
    run_script(
        "train.py",
        "-m",
        f"experiment={experiments}",
        "method=lora,prefix",
        *COMMON,
        f"hydra.sweep.dir={folder}",
    )
    return folder


def job(sweep, family: str, method: str):
    [folder] = [
        p.parent for p in sweep.glob(f"*experiment={EXPERIMENTS[family]},method={method}*/results.json")
    ]
    return folder


def untrained(run_dir) -> PromptPredictor:
    """The run's adapter as it started (the same config and seed, on a fresh backbone), rank classification."""
    config = PromptBank.load(run_dir / "bank").config
    backbone, tokenizer = load_backbone(config.backbone)
    start = new_bank(config, generator=torch.Generator().manual_seed(read_results(run_dir)["seed"]))
    model = build_model(backbone, start, backbone_dropout=False)
    tasks = load_for_inference(run_dir, device="cpu").tasks
    return PromptPredictor(model, tokenizer, tasks, EvalConfig(mode="rank"), 256)


def correct(predictor: PromptPredictor, results: dict, mode: str) -> int:
    answers = [a for t in TASKS for a in predictor.predict(eval_rows(t, results), t, mode=mode)]
    return sum(a.get("gold") == a["value"] for a in answers)


CASES = [(family, method) for family in EXPERIMENTS for method in ("lora", "prefix")]


@pytest.mark.parametrize(("family", "method"), CASES)
def test_the_demo_trains_the_adapter_and_it_beats_the_untrained_one(sweep, family, method):
    run_dir = job(sweep, family, method)
    results = read_results(run_dir)
    assert results["method"] == method and results["global_step"] == 120 and results["router_weights"] is None
    assert results["counts"] == {"sst2": 32, "rte": 32, "mnli": 32, "stsb": 32}
    start = untrained(run_dir)
    assert results["trainable_parameters"] == start.model.bank.trainable_count()  # PEFT's count
    trained = load_for_inference(run_dir, device="cpu")
    # the frozen tiny backbones answer only behind hidden instructions: untrained, greedy decoding copies words
    assert correct(start, results, "generate") == 0 < correct(trained, results, "generate")
    assert correct(start, results, "rank") < correct(trained, results, "rank")
    # compt predict gives the run's own test predictions
    stored = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    mine = trained.predict(eval_rows("mnli", results), "mnli")
    theirs = sorted((p for p in stored if p["task"] == "mnli"), key=lambda p: p["example_id"])
    assert [m["prediction"] for m in mine] == [t["prediction"] for t in theirs]


def test_compt_report_reads_the_adapter_runs(sweep):
    """(Their rows' place beside ComPT's: tests/test_adapters.py.)"""
    found = scan([sweep], progress=False)
    assert not found.missing and len(found.runs) == 4
    assert [g.settings["method"] for g in group_runs(found.runs)] == ["lora", "lora", "prefix", "prefix"]


def peft_rank(peft_model, tokenizer, family: str, text: str, choices: list[str]) -> int:
    """The choice PEFT's own forward pass scores highest (summed token log-probabilities, one unpadded pass each)."""
    ids = encode_inputs(tokenizer, [text])[0]
    scores = []
    for answer in encode_targets(tokenizer, choices):
        if family == "seq2seq":
            labels = torch.tensor([answer])
            logits = peft_model(input_ids=torch.tensor([ids]), labels=labels).logits[0]
        else:
            logits = peft_model(input_ids=torch.tensor([ids + answer])).logits[0, len(ids) - 1 : -1]
        scores.append(torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(answer)[:, None]).sum())
    return int(torch.stack(scores).argmax())


def peft_generate(peft_model, tokenizer, family: str, texts: list[str]) -> list[str]:
    """PEFT's own greedy ``generate`` on compt's input ids (a causal batch left-padded, as generation needs)."""
    ids = encode_inputs(tokenizer, texts)
    width = max(map(len, ids))
    pad = [[tokenizer.pad_token_id] * (width - len(x)) for x in ids]
    rows = [x + p for x, p in zip(ids, pad)] if family == "seq2seq" else [p + x for x, p in zip(ids, pad)]
    if family == "causal":
        mask = [[0] * len(p) + [1] * len(x) for x, p in zip(ids, pad)]
    else:
        mask = [[1] * len(x) + [0] * len(p) for x, p in zip(ids, pad)]
    sequences = peft_model.generate(
        input_ids=torch.tensor(rows), attention_mask=torch.tensor(mask), max_new_tokens=8, do_sample=False
    )
    if family == "causal":
        sequences = sequences[:, width:]
    return [a.strip() for a in tokenizer.batch_decode(sequences, skip_special_tokens=True)]


@pytest.mark.parametrize(("family", "method"), CASES)
def test_the_exported_adapter_answers_inside_peft_as_compt_predict_does(sweep, tmp_path, family, method):
    from peft import PeftModel

    run_dir = job(sweep, family, method)
    out = export_peft(run_dir, "sst2", tmp_path / "adapter")
    backbone, tokenizer = load_backbone(MODELS[family])
    peft_model = PeftModel.from_pretrained(backbone, str(out)).eval()  # a PEFT user's own loading
    predictor = load_for_inference(run_dir, device="cpu")
    results = read_results(run_dir)
    with torch.no_grad():
        for task in ("sst2", "mnli"):
            rows = eval_rows(task, results)[:16]
            ranked = predictor.predict(rows, task, mode="rank")
            choices = predictor.tasks[predictor.task_id(task)].candidates()
            theirs = [peft_rank(peft_model, tokenizer, family, r["input"], choices) for r in ranked]
            assert [r["value"] for r in ranked] == theirs
            if method == "lora":  # PEFT's generate (a prefix is lost in it under transformers 5.x: README)
                generated = predictor.predict(rows, task, mode="generate")
                answers = peft_generate(peft_model, tokenizer, family, [g["input"] for g in generated])
                assert answers == [g["prediction"] for g in generated]


def test_a_killed_lora_run_resumes_to_the_same_step_and_results(sweep, tmp_path):
    reference = job(sweep, "seq2seq", "lora")
    killed = tmp_path / "killed"
    args = ["train.py", "experiment=demo", "method=lora", *COMMON, f"hydra.run.dir={killed}"]
    kill = ["+callbacks.kill._target_=tests.interrupt.KillFreshRun", "+callbacks.kill.epoch=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, *args, *kill], cwd=REPO_ROOT, env=env, capture_output=True, timeout=900
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    resumed = run_script(*args, fresh=True)  # compared step for step with the sweep's job
    assert "resuming from" in resumed.stdout
    a, b = read_results(reference), read_results(killed)
    assert b["global_step"] == a["global_step"] == 120
    assert b["curves"]["train_loss"] == a["curves"]["train_loss"] and b["metrics"] == a["metrics"]
    weights_a = load_file(reference / "bank" / "adapter_model.safetensors")
    weights_b = load_file(killed / "bank" / "adapter_model.safetensors")
    assert weights_a.keys() == weights_b.keys() and all(
        torch.equal(weights_a[k], weights_b[k]) for k in weights_a
    )
