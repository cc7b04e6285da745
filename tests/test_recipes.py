"""Run-level methods register themselves (:mod:`compt.recipes`): the job runs the recipe its method names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from compt.config.schema import TrainSchema
from compt.errors import ConfigError
from compt.jobs.job import run_job
from compt.prompts.methods import METHODS
from compt.recipes import RECIPES, plain, recipe_for, register_recipe, single_task, spot
from tests.test_configs import CONF, composed


def test_every_method_a_user_can_choose_has_its_recipe():
    presets = {path.stem for path in (CONF / "method").glob("*.yaml")}
    assert presets <= set(RECIPES)
    assert all(recipe_for(method) is plain.fit for method in METHODS)  # a composition method is one fit
    assert recipe_for("spot") is spot.train_spot and recipe_for("pt_single") is single_task.train_single_tasks
    with pytest.raises(ConfigError, match="method=dora has no recipe .*; known: pt, ssum"):
        recipe_for("dora")
    with pytest.raises(ValueError, match="already has a recipe"):
        register_recipe("spot", plain.fit)


def test_the_job_runs_the_recipe_its_method_names(tmp_path, monkeypatch):
    calls = []

    def probe(cfg: TrainSchema, output_dir: Path, overrides: list[str]) -> dict:
        calls.append((cfg.method.name, cfg.force, Path(output_dir), overrides))
        return {"status": "complete"}

    monkeypatch.setitem(RECIPES, "probe", probe)
    cfg = TrainSchema.from_hydra(composed("experiment=demo"))
    cfg = replace(cfg, method=replace(cfg.method, name="probe"), force=True)
    assert run_job(cfg, tmp_path / "job", ["method=probe"]) == {"status": "complete"}
    assert calls == [("probe", False, tmp_path / "job", ["method=probe"])]  # force applied by the job
