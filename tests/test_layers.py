"""The package's layers and entry points: what each import pulls in, and how a user's mistake is reported.

Each check runs in a fresh interpreter, so modules imported by other tests do not hide an import.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

from compt import errors
from tests.helpers import REPO_ROOT

#: the plain-PyTorch core: no Lightning, no Hydra, no training/evaluation/CLI code
CORE_PACKAGES = (
    "compt.prompts",
    "compt.adapters",
    "compt.model",
    "compt.causal",
    "compt.family",
    "compt.tokenization",
    "compt.backbone",
    "compt.data",
    "compt.tasks",
)
SUBCOMMANDS = ("data", "evaluate", "report", "predict", "export", "sweep")


def loaded_after(code: str) -> list[str]:
    """``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def top_level(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_the_core_imports_neither_lightning_nor_hydra():
    """Every module of the core packages, not just their ``__init__``."""
    code = (
        "import importlib, pkgutil\n"
        f"for name in {CORE_PACKAGES!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    for info in pkgutil.walk_packages(getattr(module, '__path__', []), name + '.'):\n"
        "        if not info.name.endswith('.cli'):\n"
        "            importlib.import_module(info.name)"
    )
    modules = loaded_after(code)
    assert not top_level(modules) & {"pytorch_lightning", "lightning", "lightning_fabric", "hydra"}
    compt = [m for m in modules if m.startswith("compt.")]
    assert not [m for m in compt if m.startswith(("compt.training", "compt.evaluation", "compt.inference"))]
    assert not [m for m in compt if m.endswith(".cli")]


def test_evaluate_and_predict_leave_the_run_driver_out():
    """``compt evaluate`` / ``predict`` / ``export`` need a built module, not SLURM, spawning, W&B or Hydra."""
    modules = loaded_after(
        "import compt.evaluation.rerun, compt.inference.predictor, compt.inference.export, compt.runs"
    )
    driver = ("compt.training.run", "compt.training.loggers", "compt.training.launch", "compt.training.spot")
    assert not set(driver) & set(modules)
    assert not top_level(modules) & {"wandb", "hydra"}


def test_compt_help_imports_no_torch():
    code = (
        "from compt.cli import main\n"
        f"for argv in [['--help'], *[[c, '--help'] for c in {SUBCOMMANDS!r}]]:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass"
    )
    modules = top_level(loaded_after(code))
    assert not modules & {"torch", "transformers", "datasets", "pytorch_lightning", "hydra", "omegaconf"}


def test_errors_is_a_leaf():
    modules = loaded_after("import compt.errors")
    assert [m for m in modules if m.startswith("compt")] == ["compt", "compt._lazy", "compt.errors"]


def test_every_error_is_a_compt_error():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 10
    assert all(issubclass(c, errors.ComptError) for c in classes)


def test_the_cli_modes_are_the_predictors():
    from compt.evaluation.cli import MODES
    from compt.evaluation.predict import EVAL_MODES

    assert MODES == EVAL_MODES


def test_a_users_mistake_is_one_line_and_a_non_zero_exit():
    """(``predict`` and ``export`` return 2 on a user's mistake too: tests/test_predict_export.py.)"""
    proc = subprocess.run(
        [sys.executable, "-m", "compt.cli", "evaluate", "/no/such/dir"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("compt: ") and "/no/such/" in line


def test_predict_loads_only_what_prediction_needs():
    """``compt predict`` starts in seconds: no Lightning, datasets, pandas or metrics (issue 20)."""
    modules = top_level(loaded_after("import compt.inference.predictor, compt.inference.rows"))
    assert not modules & {"pytorch_lightning", "datasets", "pandas", "torchmetrics", "hydra", "wandb"}


def test_the_training_package_exports_its_module_on_first_use():
    """``from compt.training import ComptModule`` (for ``load_from_checkpoint``) works, and importing the
    package alone (``train.py`` does, before the config is checked) loads no Lightning."""
    modules = loaded_after(
        "import compt.training\n"
        "assert not {'torch', 'pytorch_lightning'} & {m.split('.')[0] for m in sys.modules}, 'eager import'\n"
        "from compt.training import ComptModule, RunConfig\n"
        "assert ComptModule.__module__ == 'compt.training.module'"
    )
    assert "compt.training.module" in modules
