"""Sweep reports: group runs over seeds, tables like the paper's, the comparison with its numbers, plots, HTML.

``compt report SWEEP_DIR --out DIR`` (see :mod:`compt.report.cli`) or :func:`build_report` from Python. The
names below are imported on first use (``compt report --help`` stays fast).
"""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.errors": ["NoResultsError"],
        "compt.report.aggregate": ["Stat", "group_runs", "scan"],
        "compt.report.build": ["Report", "build_report"],
    },
)
