"""The Hydra configs compose, with the paper's defaults, and typos fail clearly (Hydra's compose API)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_defaults_follow_the_paper():
    cfg = composed()
    assert cfg.method.name == "ssum" and cfg.method.source_length == 20 and cfg.method.epochs == 50
    assert cfg.model.name == "t5-base" and cfg.model.dropout is True
    assert list(cfg.tasks) == ["mnli", "qnli", "rte", "cola", "sst2", "stsb", "mrpc", "qqp"]
    assert (cfg.k, cfg.n_sources, cfg.data.batch_size) == (16, 3, 20)
    assert dict(cfg.optim.lr) == {"router": 0.1, "sources": 0.05, "private": 0.02}
    assert (cfg.optim.eps, cfg.optim.weight_decay, cfg.optim.warmup_ratio) == (1e-6, 0.0, 0.2)
    assert cfg.trainer.gradient_clip_val == 1.0
    assert (cfg.router.tau0, cfg.router.tau_min, cfg.router.anneal) == (5.0, 1e-3, "linear")
    assert cfg.prompt.position == "after" and cfg.eval.mode == "generate" and cfg.eval.max_samples == 100


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(experiment):
    cfg = composed(f"experiment={experiment}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_the_title_keys_and_friends_override():
    cfg = composed("method=mcat", "k=8", "seed=3", "n_sources=5", "eval.mode=rank", "router.learn=false")
    assert (cfg.method.name, cfg.method.source_length, cfg.method.epochs) == ("mcat", 10, 40)
    assert (cfg.k, cfg.seed, cfg.n_sources, cfg.eval.mode, cfg.router.learn) == (8, 3, 5, "rank", False)
    assert composed("trainer=gpu").trainer.precision == "bf16-mixed"
    assert list(composed("tasks=[rte,mrpc]").tasks) == ["rte", "mrpc"]


def test_typos_and_unknown_methods_fail_clearly():
    with pytest.raises(ConfigCompositionException, match="seeed"):
        composed("seeed=1")
    with pytest.raises(ConfigCompositionException, match="Could not find 'method/ssumm'"):
        composed("method=ssumm")


def test_epochs_double_for_small_k():
    from compt.training.build import epochs_for

    assert epochs_for(composed("k=8")) == 100
    assert epochs_for(composed("k=16")) == 50
    assert epochs_for(composed("method=mcat", "k=8")) == 80
    assert epochs_for(composed("experiment=demo", "k=8")) == 30  # the demo fixes its epochs
