"""The package's layers and entry points: what each import pulls in, and how a user's mistake is reported.

Each check runs in a fresh interpreter, so modules imported by other tests do not hide an import.
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from functools import cache

import pytest

from compt import errors
from tests.helpers import REPO_ROOT

#: the plain-PyTorch core: no Lightning, no Hydra, no training/evaluation/CLI code
CORE_PACKAGES = (
    "compt.prompts",
    "compt.models",
    "compt.adapters",
    "compt.data",
    "compt.tasks",
    "compt.optim",
)
SUBCOMMANDS = ("data", "evaluate", "report", "predict", "export", "serve", "sweep")
#: the layers, bottom up (README, "Development"): a module imports from its own folder or a lower layer only
LAYERS = (
    ("compt._lazy", "compt.errors", "compt.utils", "compt.fields", "compt.atomic", "compt.config_dir"),
    (*CORE_PACKAGES, "compt.evaluation"),
    ("compt.runs", "compt.runtime"),
    ("compt.config",),
    ("compt.training",),
    ("compt.recipes", "compt.sweeps"),
    ("compt.jobs",),
    ("compt.inference", "compt.report"),
    ("compt.serving",),
)
SOURCE = REPO_ROOT / "src" / "compt"


def loaded_in_stages(stages: dict[str, str]) -> dict[str, list[str]]:
    """``sys.modules`` after each stage's code, run in turn in one fresh interpreter. ``sys.modules`` only
    grows, so a module a stage loads is in its list whatever the stages before it loaded: a check that a module
    is absent is as strict as in an interpreter of its own."""
    script = "import json, sys\nstages = {}\n"
    script += "".join(f"{code}\nstages[{name!r}] = sorted(sys.modules)\n" for name, code in stages.items())
    proc = subprocess.run(
        [sys.executable, "-c", script + "print(json.dumps(stages))"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def loaded_after(code: str) -> list[str]:
    """``sys.modules`` after running ``code`` in a fresh interpreter."""
    return loaded_in_stages({"code": code})["code"]


#: what ``compt predict``, ``compt evaluate`` / ``export`` and ``load_from_checkpoint`` users import, in this order
#: in one interpreter (each stage loads what the one before it does and more: Lightning only from ``evaluate``)
USES = {
    "training package": "import compt.training\n"
    "assert not {'torch', 'pytorch_lightning'} & {m.split('.')[0] for m in sys.modules}, 'eager import'",
    "predict": "import compt.inference.predictor, compt.inference.rows",
    "evaluate": "import compt.inference.rerun, compt.inference.predictor, compt.inference.export, compt.runs",
    "training module": "from compt.training import ComptModule, RunConfig\n"
    "assert ComptModule.__module__ == 'compt.training.module'",
}


@pytest.fixture(scope="module")
def loaded_by_use() -> dict[str, list[str]]:
    return loaded_in_stages(USES)


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


def test_evaluate_and_predict_leave_the_run_driver_out(loaded_by_use):
    """``compt evaluate`` / ``predict`` / ``export`` need a built module, not SLURM, spawning, W&B or Hydra."""
    modules = loaded_by_use["evaluate"]
    driver = ("compt.training.fit", "compt.training.loggers", "compt.jobs.launch", "compt.recipes.spot")
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
    from compt.evaluation.predict import EVAL_MODES
    from compt.inference.cli import MODES

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


def test_predict_loads_only_what_prediction_needs(loaded_by_use):
    """``compt predict`` starts in seconds: no Lightning, datasets, pandas or metrics (issue 20)."""
    modules = top_level(loaded_by_use["predict"])
    assert not modules & {"pytorch_lightning", "datasets", "pandas", "torchmetrics", "hydra", "wandb"}


def test_the_training_package_exports_its_module_on_first_use(loaded_by_use):
    """``from compt.training import ComptModule`` (for ``load_from_checkpoint``) works, and importing the
    package alone (``train.py`` does, before the config is checked) loads no Lightning (the first stage of
    :data:`USES` asserts both in the interpreter)."""
    assert not top_level(loaded_by_use["training package"]) & {"torch", "pytorch_lightning"}
    assert "compt.training.module" in loaded_by_use["training module"]


@cache
def import_edges() -> tuple[tuple[str, str], ...]:
    """``(module, imported module)`` for every compt import in the package, at the top of a module or inside a
    function, and every module a package ``__init__`` exports on first use (``lazy_exports``)."""
    modules = {
        ".".join(("compt", *p.relative_to(SOURCE).with_suffix("").parts)).removesuffix(".__init__")
        for p in SOURCE.rglob("*.py")
    }
    edges = []
    for path in sorted(SOURCE.rglob("*.py")):
        source = ".".join(("compt", *path.relative_to(SOURCE).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compt"):
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("compt")]
            elif isinstance(node, ast.Dict) and path.name == "__init__.py":  # lazy_exports' module -> names
                targets = [
                    k.value
                    for k in node.keys
                    if isinstance(k, ast.Constant) and str(k.value).startswith("compt.")
                ]
            edges += [(source, target) for target in targets if target != source]
    return tuple(edges)


def layer(module: str) -> tuple[int, str] | None:
    """``(rank, folder)`` of a module; None for the entry points (the ``compt`` package, ``cli`` modules)."""
    if module == "compt" or module.endswith((".cli", ".__main__")):
        return None
    for rank, folders in enumerate(LAYERS):
        for folder in folders:
            if module == folder or module.startswith(folder + "."):
                return rank, folder
    raise AssertionError(f"{module} is in no layer of LAYERS: add its folder")


def test_no_module_imports_a_higher_layer():
    """Every import goes to the module's own layer or down (jobs/ may import training/, never the reverse;
    evaluation/ imports nothing of inference/, config/ nothing of training/ ...)."""
    upward = []
    for source, target in import_edges():
        here, there = layer(source), layer(target)
        if here is None or there is None or here[1] == there[1]:
            continue
        if there[0] > here[0]:
            upward.append(f"{source} -> {target}")
    assert not upward


def test_the_package_has_no_import_circle():
    graph: dict[str, set[str]] = {}
    for source, target in import_edges():
        graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles


def test_the_config_imports_no_lightning():
    """``compt.config`` (the schema, the run's objects, Hydra's registration) is plain Python + Hydra."""
    modules = loaded_after(
        "import importlib, pkgutil, compt.config\n"
        "for info in pkgutil.walk_packages(compt.config.__path__, 'compt.config.'):\n"
        "    importlib.import_module(info.name)"
    )
    assert not top_level(modules) & {"pytorch_lightning", "lightning", "lightning_fabric"}
    assert not [m for m in modules if m.startswith(("compt.training", "compt.jobs", "compt.recipes"))]


def test_training_imports_no_claim_repair_preflight_or_search_code():
    """The Lightning layer fits a run; claiming, repairing, checking and searching are the job's (jobs/): nothing
    a training module imports, directly or through others, is of jobs/ or recipes/, and none imports the claim.
    (Read from the source, every import inside functions included, so no interpreter needs to load Lightning.)"""
    graph: dict[str, set[str]] = {}
    for source, target in import_edges():
        graph.setdefault(source, set()).add(target)
    reached = {m for m in graph if m.startswith("compt.training")}
    todo = list(reached)
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in reached:
                reached.add(target)
                todo.append(target)
    assert not sorted(m for m in reached if m.startswith(("compt.jobs", "compt.recipes")))
    claims = [
        (s, t) for s, t in import_edges() if s.startswith("compt.training") and t == "compt.runs.claims"
    ]
    assert not claims


def test_nothing_registers_the_config_on_import_and_compt_sweep_registers_it_itself():
    """Hydra's ConfigStore and OmegaConf's resolvers are filled by ``register_config()`` (``train.py``, ``compt
    sweep``), never as a side effect of importing the modules that use them."""
    code = (
        "from hydra.core.config_store import ConfigStore\n"
        "from omegaconf import OmegaConf\n"
        "import compt.config.hydra, compt.config.schema, compt.jobs.launch, compt.jobs.search_sweeper, "
        "compt.sweeps.jobs\n"
        "known = lambda: ('compt_schema.yaml' in ConfigStore.instance().repo, "
        "OmegaConf.has_resolver('compt_job_folder'), OmegaConf.has_resolver('compt_sqlite'))\n"
        "before = known()\n"
        "compt.sweeps.jobs.expand(None, ['k=8,16'])\n"
        "print(json.dumps([before, known()]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", f"import json\n{code}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == [[False, False, False], [True, True, True]]


#: lines of Python a folder of the package may hold (its sub-folders included)
FOLDER_LINES = 1500
#: the folders above it, and why (README, "Development")
LARGER_FOLDERS = {
    "training": "the Lightning layer is one Trainer's parts: the module, the data module, the callbacks, the "
    "loggers, the fit of one run, DDP spawning, divergence and the stop at a step boundary, one module each; "
    "what is not Lightning lives in runtime/, config/, recipes/ and jobs/",
    "report": "one command, compt report: aggregate, tables, plots, analyses and their plots, html and build, "
    "one module each, read by nothing else",
}


def test_no_folder_is_above_1500_lines_unless_written_down_why():
    """The package's own modules (``compt/*.py``) count as a folder too."""
    sizes = {"": sum(len(p.read_text().splitlines()) for p in SOURCE.glob("*.py"))}
    for folder in SOURCE.iterdir():
        if folder.is_dir() and (folder / "__init__.py").is_file():
            sizes[folder.name] = sum(len(p.read_text().splitlines()) for p in folder.rglob("*.py"))
    assert set(LARGER_FOLDERS) <= set(sizes)
    over = {name: lines for name, lines in sizes.items() if lines > FOLDER_LINES}
    assert not over.keys() - LARGER_FOLDERS.keys(), over
