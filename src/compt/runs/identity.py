"""Which command-line overrides make a job what it is, and which only say how it runs or who watches it.

A sweep job's folder (``multirun/<name>/<overrides>``), its W&B group and name, and its row in
``compt report`` are made from the overrides that can change the job's result (:func:`result_overrides`).
The others — loggers, callbacks that only observe, the checkpoint cadence, claim timings, output paths, the
sweep's name, ``force``, GPU sharing — stay out, so relaunching a sweep with ``logger=tensorboard`` finds the
jobs it finished with ``logger=csv`` and skips them, and one run is one report row whatever watched it.
Folder names of jobs whose overrides hold none of these keys are exactly Hydra's ``override_dirname``.

A leaf module (standard library only): the report reads it without Hydra or torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: keys that cannot change a run's result, with every key below them (``logger`` covers ``logger.wandb.tags``)
NON_RESULT_KEYS = (
    "name",  # the sweep's folder multirun/<name>
    "sweep",  # +sweep=<name>: picks the sweep (its jobs' own overrides are listed)
    "force",  # re-runs a job; the result is the same job's
    "paths",  # where outputs go
    "jobs_per_gpu",  # how many jobs share a GPU
    "claim",  # heartbeat and stale times of the job's claim
    "logger",  # who records the run
    "callbacks.checkpoint_every_n_epochs",  # resumes are exact, whatever the cadence
    "callbacks.keep_last_checkpoint",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "hydra",
)
#: ``conf/callbacks/`` entries that only observe (``+callbacks=rich_progress_bar``)
OBSERVING_CALLBACKS = ("rich_progress_bar", "device_stats_monitor")
#: Lightning callback classes that only observe, named inline (``+callbacks.lr._target_=...LearningRateMonitor``)
OBSERVING_CALLBACK_CLASSES = (
    "LearningRateMonitor",
    "DeviceStatsMonitor",
    "RichProgressBar",
    "TQDMProgressBar",
    "ModelSummary",
    "RichModelSummary",
)
#: the seed: part of a job (its folder) but not of its group (a report row, a W&B group averages seeds)
SEED_KEY = "seed"

_NAMES = re.compile(r"^\[?\s*([\w.-]+(?:\s*,\s*[\w.-]+)*)?\s*\]?$")


def override_key(override: str) -> str:
    """The key of an override as typed: ``+callbacks=x`` -> ``callbacks``, ``~a.b`` -> ``a.b``."""
    return override.lstrip("+~").partition("=")[0].strip()


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _observing_inline_callbacks(overrides: Iterable[str]) -> set[str]:
    """Names ``N`` of ``callbacks.N._target_=<an observing Lightning class>`` overrides."""
    names = set()
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        parts = key.strip().split(".")
        is_target = len(parts) == 3 and parts[0] == "callbacks" and parts[2] == "_target_"
        if is_target and value.strip().rsplit(".", 1)[-1] in OBSERVING_CALLBACK_CLASSES:
            names.add(parts[1])
    return names


def _without_observing_callbacks(override: str) -> str | None:
    """A ``callbacks=`` group override without the observe-only entries: None when nothing is left, the
    override unchanged when it names none (or is not a plain name or list of names)."""
    head, _, value = override.partition("=")
    match = _NAMES.match(value.strip())
    if match is None:
        return override
    names = [n.strip() for n in (match.group(1) or "").split(",") if n.strip()]
    kept = [n for n in names if n not in OBSERVING_CALLBACKS]
    if len(kept) == len(names):
        return override
    if not kept:
        return None
    return f"{head}=[{','.join(kept)}]" if value.strip().startswith("[") else f"{head}={kept[0]}"


def result_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides (as typed, in their order) that can change a run's result: without
    :data:`NON_RESULT_KEYS`, observe-only callbacks (:data:`OBSERVING_CALLBACKS`, and inline callbacks whose
    ``_target_`` is one of :data:`OBSERVING_CALLBACK_CLASSES`, with all their settings)."""
    overrides = [str(o) for o in overrides]
    observing = {
        f"callbacks.{name}" for name in [*OBSERVING_CALLBACKS, *_observing_inline_callbacks(overrides)]
    }
    kept = []
    for override in overrides:
        key = override_key(override)
        if _under(key, NON_RESULT_KEYS) or _under(key, observing):
            continue
        if key == "callbacks":
            override = _without_observing_callbacks(override)
            if override is None:
                continue
        kept.append(override)
    return kept


def job_dirname(overrides: Iterable[str]) -> str:
    """A sweep job's folder name before escaping (``compt.jobs.launch.job_folder_name``): its
    :func:`result_overrides`, sorted and joined by ``,`` as Hydra's ``override_dirname`` joins them."""
    return ",".join(sorted(result_overrides(overrides)))


def group_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides that define a run's group (its W&B group, its ``compt report`` row): its
    :func:`result_overrides` without the seed, sorted."""
    return sorted(o for o in result_overrides(overrides) if override_key(o) != SEED_KEY)
