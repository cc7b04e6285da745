"""The Hydra configs compose, with the paper's defaults, and typos fail clearly (Hydra's compose API)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from compt.config.hydra import register_schema
from compt.config.run_config import RunConfig
from compt.config.schema import TrainSchema
from compt.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def composed(*overrides: str):
    register_schema()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_defaults_follow_the_paper():
    cfg = composed()
    assert cfg.method.name == "ssum" and cfg.method.source_length == 20 and cfg.method.epochs == 50
    assert cfg.model.name == "t5-base" and cfg.model.dropout is True
    assert list(cfg.tasks) == ["mnli", "qnli", "rte", "cola", "sst2", "stsb", "mrpc", "qqp"]
    assert (cfg.k, cfg.n_sources, cfg.data.batch_size) == (16, 3, 20)
    assert dict(cfg.optim.lr) == {"router": 0.1, "sources": 0.05, "private": 0.02, "adapter": 3e-4}
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


def epochs_for(cfg) -> int:
    schema = TrainSchema.from_hydra(cfg)
    return schema.optim.epochs_for(schema.method.epochs, schema.k)


def test_epochs_double_for_small_k():
    assert epochs_for(composed("k=8")) == 100
    assert epochs_for(composed("k=16")) == 50
    assert epochs_for(composed("method=mcat", "k=8")) == 80
    assert epochs_for(composed("experiment=demo", "k=8")) == 30  # the demo fixes its epochs


def test_protocol_authors_composes_to_every_row_of_method_md_section_8():
    paper, authors = composed(), composed("protocol=authors", "method=mcat", "k=8")
    assert (paper.protocol, authors.protocol) == ("paper", "authors")
    expected = {
        "metrics.compat": True,  # metric reading: accuracy, stsb spearman
        "router.sample": "per_example",  # router noise: one sample per example (the default in both)
        "router.train_norm": "sum_compat",  # softmax(z / Σz + 1e-8)
        "router.anneal": "step_compat",  # τ0 by k (5 at k=8), −0.02 per step
        "data.temperature": 1.0,  # task mixing: every example once per epoch (quotas ∝ n_i, the default)
        "optim.schedule": "linear_compat",  # their step count A, horizon A + warm-up + 5
        "optim.eps": 1e-8,  # torch.optim.AdamW's defaults
        "optim.weight_decay": 0.01,
        "optim.lr.router": 0.15,  # MCAT learning rates
        "optim.lr.sources": 0.05,
        "optim.lr.private": 0.08,
        "prompt.private_init": "vocab_first_rows",
        "data.truncation": "chars_compat",
        "data.max_source_length": 512,  # no token limit of 256
        "data.input_format": "authors_compat",  # "src-<task>: sentence1: ..."
        "data.regression_targets": "round1_compat",
        "eval.answer_parsing": "first_word_compat",
        "eval.repetition_penalty": 2.0,  # test-time decoding
        "trainer.precision": "32-true",
    }
    for key, value in expected.items():
        assert OmegaConf.select(authors, key) == value, key
    assert composed("protocol=authors", "method=ssum").optim.lr.private == 0.02  # MCAT rates only for mcat
    assert composed("protocol=authors", "trainer=gpu").trainer.precision == "32-true"  # fp32 on GPU too
    # each item stays overridable
    overridden = composed("protocol=authors", "method=mcat", "metrics.compat=false", "optim.lr.router=0.3")
    assert (overridden.metrics.compat, overridden.optim.lr.router) == (False, 0.3)
    same = {key for key in expected if OmegaConf.select(paper, key) == expected[key]}
    assert same == {"router.sample", "data.temperature", "optim.lr.sources", "trainer.precision"}


def test_the_authors_pt_baseline_is_its_own_method():
    cfg = composed("method=pt_single")
    assert (cfg.method.name, cfg.method.private_length, cfg.method.epochs) == ("pt_single", 50, 20)
    assert (cfg.prompt.position, cfg.optim.lr.private, cfg.data.batch_size) == ("before", 0.05, 12)
    # PT.json's adjust_epochs: true doubles them when k <= 10 (attempt/run_seq2seq.py c7a19a2 L1061–1064)
    assert cfg.optim.double_epochs_max_k == 10
    assert epochs_for(composed("method=pt_single", "k=8")) == 40
    assert epochs_for(composed("method=pt_single", "k=10")) == 40
    assert epochs_for(composed("method=pt_single", "k=16")) == 20


def test_a_recorded_config_from_an_older_run_still_builds():
    """``compt evaluate`` / ``predict`` read a run's recorded config: keys added since take their defaults."""
    recorded = OmegaConf.to_container(composed("experiment=demo"), resolve=True)
    for section, key in (("router", "sample"), ("data", "truncation"), ("eval", "answer_parsing")):
        del recorded[section][key]
    del recorded["metrics"], recorded["protocol"]
    config = RunConfig.from_hydra(recorded)
    assert (config.bank.router_sample, config.evaluation.metrics_compat, config.run.protocol) == (
        "per_example",
        False,
        "paper",
    )
    assert {task.truncation for task in config.tasks} == {"tokens"}
    assert (config.bank.backbone, config.data.k, config.router.k, config.epochs) == ("tiny", 16, 16, 30)


def test_a_wrong_key_or_type_in_a_recorded_config_is_a_config_error():
    recorded = OmegaConf.to_container(composed(), resolve=True)
    recorded["router"]["tau"] = 1.0
    with pytest.raises(ConfigError, match="tau"):
        RunConfig.from_hydra(recorded)
    recorded = OmegaConf.to_container(composed(), resolve=True)
    recorded["k"] = "sixteen"
    with pytest.raises(ConfigError, match="sixteen"):
        RunConfig.from_hydra(recorded)


@pytest.mark.parametrize("method", ["ssum", "msum", "mcat"])
def test_tables_3_4_under_protocol_authors_take_their_5000_row_settings(method):
    """``attempt/confs/213-5-5000@85.89@conf_topcat.json`` (8685af8, MCAT; used for SSUM/MSUM too): 5 epochs at
    batch 20, router lr 0.1, prompts 0.05 (private = their target prompts, ``prompt_learning_rate``); τ0 = 1 at
    5000 rows, −0.02 per step (``attempt/run_seq2seq.py`` c7a19a2 L1212–1226, their ``anneal_rate`` 0.02)."""
    config = RunConfig.from_hydra(
        composed("+sweep=table3_4", "protocol=authors", f"method={method}", "tasks=glue")
    )
    assert (config.data.k, config.epochs, config.data.batch_size) == (5000, 5, 20)
    optim = config.optim
    assert (optim.lr_router, optim.lr_sources, optim.lr_private, optim.schedule) == (
        0.1,
        0.05,
        0.05,
        "linear_compat",
    )
    assert optim.compat_steps == 5000 * 8 * 5 // 20
    temperatures = [config.router.temperature(step, 10_000) for step in (0, 10, 49, 50, 1000)]
    assert temperatures == pytest.approx([1.0, 0.8, 0.02, 0.001, 0.001])
    paper = RunConfig.from_hydra(composed("+sweep=table3_4", f"method={method}", "tasks=glue"))
    assert paper.epochs == {"mcat": 40}.get(method, 50) and paper.optim.lr_private == 0.02
    assert paper.router.temperature(0, 100) == 5.0  # the paper's linear anneal from 5
    assert RunConfig.from_hydra(composed("+sweep=table3_4", "protocol=authors", "optim.epochs=2")).epochs == 2


def test_a_pass_through_knob_is_one_library_field_and_reachable_from_the_command_line(monkeypatch):
    """Adding a knob = one library field: the schema, train.py's key check, Hydra and the run's DataConfig
    all follow (nothing else written)."""
    from dataclasses import dataclass

    from compt.config import knobs
    from compt.config.command_line import check_overrides
    from compt.config.hydra import register_schema
    from compt.config.schema import build_schema
    from compt.data.config import DataConfig
    from compt.fields import knob

    @dataclass
    class WithPrefetch(DataConfig):
        prefetch_factor: int | None = knob("data.prefetch_factor", None)
        """batches each DataLoader worker loads ahead"""

    argv = ["experiment=demo", "data.prefetch_factor=4"]
    with pytest.raises(ConfigError, match="unknown key data.prefetch_factor"):
        check_overrides(argv, TrainSchema, CONF)  # not a key before the field exists
    monkeypatch.setitem(knobs.LIBRARY, "data", WithPrefetch)
    schema = build_schema()
    check_overrides(argv, schema, CONF)
    register_schema(schema)
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", overrides=argv)
    finally:
        register_schema(TrainSchema)
    config = RunConfig.from_schema(schema.from_hydra(cfg))
    assert isinstance(config.data, WithPrefetch) and config.data.prefetch_factor == 4
    assert composed().data.get("prefetch_factor", "absent") == "absent"  # the real schema is back


def test_every_knob_keeps_its_key_and_default_and_a_config_pickles():
    """The keys and defaults of the library fields as the schema types them (README's table); a typed config
    pickles, as ``ddp_spawn`` hands it to its ranks."""
    import pickle

    cfg = TrainSchema.from_hydra(composed())
    assert (cfg.data.batch_size, cfg.eval.max_samples, cfg.kshot.balanced, cfg.sources.freeze) == (
        20,
        100,
        False,
        False,
    )
    assert (cfg.method.mpt_rank, cfg.method.attempt_hidden, cfg.eval.masks, cfg.metrics.compat) == (
        1,
        None,
        ["total"],
        False,
    )
    assert pickle.loads(pickle.dumps(cfg)) == cfg
