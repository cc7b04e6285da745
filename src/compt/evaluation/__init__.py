"""Evaluation: predictions by generation or rank classification, per-task metrics, and ``compt evaluate``
(re-evaluating a trained run under masks). The names below are imported on first use."""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.evaluation.config": ["EVAL_MODES", "EvalConfig"],
        "compt.evaluation.metrics": ["TaskMetrics", "primary_metric"],
        "compt.evaluation.predict": ["Predictions", "Predictor"],
        "compt.evaluation.rerun": ["evaluate_run"],
    },
)
