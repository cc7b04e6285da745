"""Evaluation: predictions by generation or rank classification, and per-task metrics (plain PyTorch and
torchmetrics; re-evaluating a finished run, ``compt evaluate``, is :mod:`compt.inference.rerun`). The names below
are imported on first use."""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.evaluation.config": ["EVAL_MODES", "EvalConfig"],
        "compt.evaluation.metrics": ["TaskMetrics", "primary_metric"],
        "compt.evaluation.predict": ["Predictions", "Predictor"],
    },
)
