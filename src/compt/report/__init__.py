"""Sweep reports: group runs over seeds, tables like the paper's, the comparison with its numbers, plots, HTML.

``compt report SWEEP_DIR --out DIR`` (see :mod:`compt.report.cli`) or :func:`build_report` from Python.
"""

from compt.report.aggregate import NoResultsError, Stat, group_runs, scan
from compt.report.build import Report, build_report

__all__ = ["NoResultsError", "Report", "Stat", "build_report", "group_runs", "scan"]
