"""Sweeps (``conf/sweep/<name>.yaml``): their jobs and output folders listed without running anything
(:mod:`~compt.sweeps.jobs`, ``compt sweep list``). The names below are imported on first use."""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.sweeps.jobs": ["Job", "expand", "list_jobs", "sweep_names"],
    },
)
