"""Evaluation: predictions by generation or rank classification, and per-task metrics."""

from compt.evaluation.metrics import TaskMetrics, primary_metric
from compt.evaluation.predict import EVAL_MODES, Predictions, Predictor

__all__ = ["EVAL_MODES", "Predictions", "Predictor", "TaskMetrics", "primary_metric"]
