"""Hyperparameter search (``hparams_search=optuna``): what a trial checks before it trains, and the value
``train.py`` returns to the sweeper (``optimized_metric``), read back from the folder of a finished job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from compt.errors import ComptError, ConfigError, IncompleteRunError
from compt.runs import RunDir

#: prefix of the metrics a search may optimise: those of the validation set, never the test set's
VALIDATION_PREFIX = "val/"


def check_search(cfg: DictConfig) -> None:
    """Refuse a search that would tune on the test set.

    With ``optimized_metric`` set (``hparams_search=optuna``), the objective must be a validation metric
    (``val/...``) and the validation set must be carved from the training split
    (``data.validation_from_train`` > 0 rows per task, disjoint from the k-shot rows): with 0 the validation
    set is the test set.

    Raises:
        ConfigError: naming the setting to change.
    """
    metric = cfg.get("optimized_metric")
    if not metric:
        return
    if not str(metric).startswith(VALIDATION_PREFIX):
        raise ConfigError(
            f"optimized_metric={metric}: a search optimises a validation metric (val/avg, val/avg_paper, "
            "val/<task>/<metric>), never a test result"
        )
    rows = cfg.data.validation_from_train
    if rows == 0:
        raise ConfigError(
            f"optimized_metric={metric} would tune on the test set: with data.validation_from_train=0 the "
            "validation set is the test set. Carve a development split from the training data instead: "
            "data.validation_from_train=N (rows per task, disjoint from the k-shot rows; hparams_search=optuna "
            "uses k)"
        )
    if isinstance(rows, int) and rows < 0:
        raise ConfigError(
            f"data.validation_from_train={rows}: give the development rows per task as a number "
            "(hparams_search=optuna uses k, which is -1 here)"
        )


class SearchGuard(Callback):
    """Hydra callback of every ``-m`` launch (``conf/hydra/default.yaml``; a no-op without ``optimized_metric``):
    :func:`check_search` before the sweeper opens its study, so a search that would tune on the test set stops
    with one ``compt:`` line and leaves no study (nor folder) behind (each job checks again, for values the
    sweeper sets)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_search(config)
        except ComptError as err:
            raise SystemExit(f"compt: {err}") from None


def objective(cfg: DictConfig, results: dict[str, Any] | None, run_dir: str | Path) -> float | None:
    """What ``train.py`` returns: ``optimized_metric`` from the run's final validation (``results.json``'s
    ``validation.metrics``), or the test ``avg`` when no metric is named.

    ``results`` is None when the job was already complete and skipped: its ``results.json`` is read back, so
    a relaunched search re-reports finished trials instead of failing them. An empty ``results`` (a DDP rank
    other than 0) or a job without complete results gives None.

    Raises:
        ConfigError: the run has no such validation metric (the message lists those it has).
    """
    if results is None:
        try:
            results = RunDir(Path(run_dir)).complete_results()
        except IncompleteRunError:
            return None
    if not results:
        return None
    metric = cfg.get("optimized_metric")
    if not metric:
        return results.get("avg")
    metrics = (results.get("validation") or {}).get("metrics") or {}
    if metric not in metrics:
        known = ", ".join(sorted(metrics)) or "none: the run was never validated"
        raise ConfigError(f"optimized_metric={metric} is not a validation metric of {run_dir} ({known})")
    return metrics[metric]
