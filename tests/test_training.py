"""End-to-end: the real train.py on the tiny model and the bundled demo data (CPU, offline)."""

from __future__ import annotations

import json
import platform
import shutil
import warnings
from types import SimpleNamespace

import pytest
import torch

from compt import ComptModel, PromptBank, PromptBankConfig
from compt.evaluation import Predictor
from compt.optim import OptimConfig, build_optimizer
from compt.tasks import get_task
from tests.helpers import FAST, REPO_ROOT, read_results, run_script
from tests.test_predict_export import eval_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``make demo``'s run, shared by several tests: 30 epochs of 4 batches, logged every 10 steps (the demo
    logs every 4; the logging interval changes no result, and the logging test needs it longer than an epoch)."""
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    proc = run_script("train.py", *DEMO, f"hydra.run.dir={run_dir}")
    return run_dir, proc


#: ``make demo``'s command (the progress bar off), logged every 10 steps
DEMO = ["experiment=demo", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=10"]


def test_demo_run_writes_its_outputs_and_loss_falls(demo_run):
    run_dir, proc = demo_run
    results = read_results(run_dir)
    assert results["status"] == "complete"
    assert results["tasks"] == ["sst2", "rte", "mnli", "stsb"]
    losses = [loss for _, loss in results["curves"]["train_loss"]]
    assert len(losses) == 30 and losses[-1] < losses[0] * 0.8
    assert results["global_step"] == 30 * 4  # 30 epochs × (4 tasks × 16 examples / batch 16)
    assert results["counts"] == {"sst2": 32, "rte": 32, "mnli": 32, "stsb": 32}
    assert set(results["router_weights"]) == {"sst2", "rte", "mnli", "stsb"}
    assert all(abs(sum(w) - 1) < 1e-5 for w in results["router_weights"].values())
    assert results["avg"] == pytest.approx(sum(results["primary"].values()) / 4)
    assert (
        results["primary_paper"]["stsb"] == results["metrics"]["stsb"]["spearman"]
    )  # the paper's reading too
    assert results["avg_paper"] == pytest.approx(sum(results["primary_paper"].values()) / 4)
    assert (
        results["protocol"] == "paper"
        and "total" in results["masks"]
        and "avg_paper" in results["masks"]["total"]
    )
    assert len(results["curves"]["val_avg"]) == 3  # validated every 10 epochs
    assert results["config"]["method"]["name"] == "ssum" and results["config"]["k"] == 16
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4 * 32
    assert {"task", "example_id", "prediction", "gold", "valid", "input", "target"} <= set(predictions[0])
    assert "| **avg** |" in proc.stdout
    assert (run_dir / "bank" / "prompt_bank.safetensors").is_file()


def test_the_demo_prints_the_readme_figures_and_learns_its_tasks_through_the_prompts_alone(demo_run):
    """``make demo``'s run prints what README.md says (portable_cpu: the same bits on any x86-64 CPU). The
    committed tiny backbone answers a task only behind a hidden instruction (scripts/make_tiny_model.py):
    untrained prompts make it copy words (every generation invalid), trained ones recover the tasks."""
    from compt.inference import load_for_inference
    from compt.inference.rerun import evaluate_run

    run_dir, proc = demo_run
    results = read_results(run_dir)
    printed = results["primary"]
    if platform.machine() in ("x86_64", "AMD64"):
        readme = " ".join((REPO_ROOT / "README.md").read_text().split())
        figures = "sst2 {sst2:.1f}, rte {rte:.1f}, mnli {mnli:.1f} and stsb {stsb:.1f}".format(**printed)
        assert f"`make demo` prints {figures}" in readme, proc.stdout[-1500:]
    generated = evaluate_run(run_dir, mode="generate")["total"]
    assert generated["primary"]["mnli"] >= 90 and generated["primary"]["sst2"] >= 80, generated
    assert generated["invalid"]["mnli"] == 0 and generated["invalid"]["sst2"] == 0
    # the same bank, untrained, on the same backbone: greedy generation copies words, no mnli answer is valid
    predictor = load_for_inference(run_dir, device="cpu")
    trained = predictor.model.bank
    predictor.model.bank = PromptBank(
        trained.config,
        predictor.model.backbone.get_input_embeddings().weight,
        torch.Generator().manual_seed(1),
    )
    answers = predictor.predict(eval_rows("mnli", results), "mnli", mode="generate")
    assert len(answers) == 32 and not any(a["valid"] for a in answers), [a["prediction"] for a in answers[:5]]


def test_epochs_shorter_than_the_logging_interval_log_across_epochs_without_a_warning(demo_run):
    """Lightning warns once per run that 4 batches < log_every_n_steps=10, yet logs every 10 global steps."""
    run_dir, proc = demo_run
    assert "smaller than the logging interval" not in proc.stderr + proc.stdout
    rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    step, loss = rows[0].split(",").index("step"), rows[0].split(",").index("train/loss")
    assert [row.split(",")[step] for row in rows[1:] if row.split(",")[loss]] == [
        str(s) for s in range(9, 120, 10)
    ]


def test_checkpoint_holds_only_trainable_state_and_loads_weights_only(demo_run):
    run_dir, _ = demo_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    bank = PromptBank.load(run_dir / "bank")
    expected = sorted(f"model.bank.{name}" for name, _ in bank.named_parameters())
    assert sorted(checkpoint["state_dict"]) == expected
    assert len(checkpoint["optimizer_states"][0]["param_groups"]) == 3
    assert [g["name"] for g in checkpoint["optimizer_states"][0]["param_groups"]] == [
        "router",
        "sources",
        "private",
    ]
    assert checkpoint["hyper_parameters"]["model_name"] == "tiny"


def test_lightning_load_from_checkpoint_rebuilds_the_trained_module(demo_run):
    from compt.training.module import ComptModule

    run_dir, _ = demo_run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = ComptModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    # the frozen backbone is left out of checkpoints by design: not "missing"
    assert not [w for w in caught if "not in the checkpoint" in str(w.message)]
    bank = PromptBank.load(run_dir / "bank")
    assert module.bank.task_names == ["sst2", "rte", "mnli", "stsb"]
    assert all(torch.equal(p, bank.state_dict()[k]) for k, p in module.bank.state_dict().items())


#: the relaunches after ``force=true``: mcat in bf16-mixed (the GPU trainer's precision, here through CPU
#: autocast: the same module code under bf16), evaluated by generation
RETRAINED = [*FAST, "method=mcat", "trainer.precision=bf16-mixed", "eval.mode=generate"]


@pytest.fixture(scope="module")
def relaunched(demo_run, tmp_path_factory):
    """A copy of the complete demo run relaunched three times: as it is (skipped); with ``force=true``, one
    epoch and another method (trained again from scratch, :data:`RETRAINED`); then, its results.json lost as if
    it had died after its last checkpoint, with two epochs and no resume checkpoint kept once complete
    (resumed)."""
    run_dir = tmp_path_factory.mktemp("relaunched") / "run"
    shutil.copytree(demo_run[0], run_dir)
    assert read_results(run_dir)["global_step"] == 120
    skipped = run_script("train.py", *DEMO, f"hydra.run.dir={run_dir}")
    forced = run_script("train.py", *RETRAINED, "optim.epochs=1", "force=true", f"hydra.run.dir={run_dir}")
    forced_results = read_results(run_dir)
    (run_dir / "results.json").unlink()
    resumed = run_script(
        "train.py", *RETRAINED, "callbacks.keep_last_checkpoint=false", f"hydra.run.dir={run_dir}"
    )
    return SimpleNamespace(
        skipped=skipped, forced=forced, forced_results=forced_results, resumed=resumed, dir=run_dir
    )


def test_a_complete_run_is_skipped_unless_forced(relaunched):
    assert "skipping" in relaunched.skipped.stdout
    assert "skipping" not in relaunched.forced.stdout  # force=true trains it again


def test_force_retrains_a_complete_run_from_scratch(relaunched):
    proc, results = relaunched.forced, relaunched.forced_results
    assert "resuming from" not in proc.stdout and "training starts from scratch" in proc.stdout
    assert results["global_step"] == 4  # one fresh epoch, not the 120 finished steps "resumed"
    assert [step for step, _ in results["curves"]["train_loss"]] == [4]


def test_resume_from_last_checkpoint_continues_the_step_count(relaunched):
    assert "resuming from" in relaunched.resumed.stdout
    results = read_results(relaunched.dir)
    assert results["global_step"] == 8  # the forced run's epoch, then a second one
    assert [step for step, _ in results["curves"]["train_loss"]] == [4, 8]


def test_a_complete_run_can_drop_its_resume_checkpoint(relaunched):
    assert read_results(relaunched.dir)["status"] == "complete"
    assert not (relaunched.dir / "checkpoints" / "last.ckpt").exists()
    assert (relaunched.dir / "bank" / "prompt_bank.safetensors").is_file()


def test_bf16_mixed_precision_trains_and_evaluates_on_cpu_too(relaunched):
    """The GPU trainer's precision (trainer=gpu) through CPU autocast: the same module code under bf16."""
    for results in (relaunched.forced_results, read_results(relaunched.dir)):
        assert results["config"]["trainer"]["precision"] == "bf16-mixed"
        assert results["config"]["eval"]["mode"] == "generate"
        assert all(loss == loss for _, loss in results["curves"]["train_loss"])  # no NaN
    bank = PromptBank.load(relaunched.dir / "bank")
    assert bank.config.method == "mcat"
    assert all(p.dtype == torch.float32 for p in bank.parameters())  # the bank stays fp32 under autocast


def _two_task_batch(tokenizer):
    texts = [
        "sst2: sentence: the food was fun",
        "sst2: sentence: a dull film",
        "rte: sentence1: a cat sentence2: a dog",
    ]
    enc = tokenizer([*texts, "rte: sentence1: a man sentence2: a boy"], padding=True, return_tensors="pt")
    labels = tokenizer(
        ["positive", "positive", "not_entailment", "not_entailment"], padding=True, return_tensors="pt"
    )
    labels = labels.input_ids.masked_fill(labels.input_ids == tokenizer.pad_token_id, -100)
    batch = {
        "input_ids": enc.input_ids,
        "attention_mask": enc.attention_mask,
        "task_ids": torch.tensor([0, 0, 1, 1]),
    }
    return batch, labels


def test_memorisable_task_reaches_full_accuracy_through_router_and_sources(tiny_backbone):
    """Two tasks with one label each, method=sources_only: the router weights are the only task-dependent
    part, so 100% accuracy proves the gradient path through composition, router and encoders."""
    backbone, tokenizer = tiny_backbone
    tasks = [get_task("sst2"), get_task("rte")]
    batch, labels = _two_task_batch(tokenizer)
    torch.manual_seed(0)
    config = PromptBankConfig(
        method="sources_only", task_names=["sst2", "rte"], d_model=64, n_sources=2, source_length=4
    )
    bank = PromptBank(config)
    model = ComptModel(backbone, bank, backbone_dropout=False).train()
    optimizer, _ = build_optimizer(bank, OptimConfig(lr_router=0.1, lr_sources=0.05, warmup_ratio=0.0), 100)
    bank.router.temperature = 1.0
    for _ in range(100):
        loss = model(batch["input_ids"], batch["attention_mask"], batch["task_ids"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    gold = torch.tensor([1.0, 1.0, 1.0, 1.0])
    ranked = Predictor(tasks, tokenizer, "rank")(model, batch)
    generated = Predictor(tasks, tokenizer, "generate")(model, batch)
    assert torch.equal(ranked.values, gold), ranked.texts
    assert (
        generated.texts == ranked.texts
    )  # the two prediction modes agree on a model whose outputs are fixed
    weights = bank.router_weights()
    assert weights[0].argmax() != weights[1].argmax()  # the tasks route to different sources
