"""GPU-only paths (bf16-mixed, several GPUs). Marked ``gpu``: skipped on machines without CUDA (CI, laptops)."""

from __future__ import annotations

import pytest
import torch

from compt import ComptModel, PromptBank, PromptBankConfig
from tests.helpers import FAST, read_results, run_script

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("method", ["ssum", "mcat"])
def test_bf16_autocast_step_keeps_the_bank_in_fp32(tiny_backbone, method):
    backbone, tokenizer = tiny_backbone
    bank = PromptBank(
        PromptBankConfig(method=method, task_names=["rte", "sst2"], d_model=64, source_length=4)
    )
    model = ComptModel(backbone, bank).cuda().train()
    enc = tokenizer(
        ["rte: sentence1: a sentence2: b", "sst2: sentence: fun"], padding=True, return_tensors="pt"
    )
    labels = tokenizer(["entailment", "positive"], padding=True, return_tensors="pt").input_ids
    labels[labels == tokenizer.pad_token_id] = -100
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(
            enc.input_ids.cuda(), enc.attention_mask.cuda(), torch.tensor([0, 1]).cuda(), labels.cuda()
        )
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 and p.grad is not None for p in bank.parameters())
    model.cpu()


def test_demo_trains_with_trainer_gpu_in_bf16_mixed(tmp_path):
    run_dir = tmp_path / "run"
    run_script("train.py", *FAST, "trainer=gpu", f"hydra.run.dir={run_dir}")
    results = read_results(run_dir)
    assert results["config"]["trainer"]["precision"] == "bf16-mixed"
    assert results["global_step"] == 8
    assert all(loss == loss for _, loss in results["curves"]["train_loss"])  # no NaN under bf16


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_ddp_on_two_gpus_writes_one_result_with_full_counts(tmp_path):
    run_dir = tmp_path / "run"
    run_script("train.py", *FAST, "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={run_dir}")
    assert read_results(run_dir)["counts"] == {"sst2": 8, "rte": 8, "mnli": 8, "stsb": 8}
