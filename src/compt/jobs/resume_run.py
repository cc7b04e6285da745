"""``python train.py resume=RUN_DIR [overrides]``: continue an interrupted single run in its own folder.

The ``resume=`` argument is replaced, before Hydra reads the command line, by the run's own overrides (its
``.hydra/overrides.yaml``) and ``hydra.run.dir=RUN_DIR``: the same command a sweep relaunch gives a job, so
the run resumes from ``checkpoints/last.ckpt`` (or is skipped when complete, or starts in that folder when it
stopped before its first checkpoint). Overrides given beside ``resume=`` replace the saved ones of the same key.
"""

from __future__ import annotations

from pathlib import Path

from compt.errors import ConfigError
from compt.runs import RunDir

RESUME_ARGUMENTS = ("resume=", "+resume=")
MULTIRUN_FLAGS = ("-m", "--multirun")


def override_key(argument: str) -> str | None:
    """The key a command-line override sets (``+k=v``, ``~k``, ``k=v`` -> ``k``); None for a flag."""
    if argument.startswith("-"):
        return None
    return argument.lstrip("+~").split("=", 1)[0]


def quoted(value: str) -> str:
    """``value`` as one quoted Hydra override value (commas, ``=`` and spaces of a sweep job's folder kept)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def resume_arguments(argv: list[str]) -> list[str]:
    """``train.py``'s arguments with ``resume=RUN_DIR`` expanded (module docstring); unchanged without it.

    Raises:
        ConfigError: ``resume=`` twice, empty, under ``-m``, beside ``hydra.run.dir=``, or of a search's trial.
        RunNotFoundError: the folder holds no ``.hydra/overrides.yaml``.
    """
    given = [index for index, argument in enumerate(argv) if argument.startswith(RESUME_ARGUMENTS)]
    if not given:
        return list(argv)
    if len(given) > 1:
        raise ConfigError("resume= is given more than once")
    if any(argument in MULTIRUN_FLAGS for argument in argv):
        raise ConfigError(
            "resume= continues one run; relaunch a sweep with its own command to resume its jobs"
        )
    index = given[0]
    folder = argv[index].split("=", 1)[1]
    if not folder:
        raise ConfigError("resume= needs a run folder: resume=outputs/<date>/<time>")
    others = argv[:index] + argv[index + 1 :]
    keys = {override_key(argument) for argument in others}
    if "hydra.run.dir" in keys:
        raise ConfigError("give either resume=RUN_DIR or hydra.run.dir=, not both")
    run = RunDir(Path(folder).resolve())
    saved = [override for override in run.overrides() if override_key(override) not in keys]
    if any(override_key(override) == "hparams_search" for override in saved):
        raise ConfigError(
            f"{folder} is a trial of a hyperparameter search: relaunch the search's command to resume it"
        )
    print(f"[compt] resume={folder}: {' '.join(saved) or '(no overrides)'} in {run.path}")
    return argv[:index] + saved + [f"hydra.run.dir={quoted(str(run.path))}"] + argv[index + 1 :]
