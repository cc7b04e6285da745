"""Errors raised by the data layer; each message says what to change."""

from __future__ import annotations


class DataError(ValueError):
    """The data of a task does not fit its definition (missing file or column, bad label, empty split)."""


class DataSourceError(DataError):
    """A dataset could not be obtained from its source (hub unreachable and not cached)."""


HUB_HELP = (
    "The Hugging Face hub could not be reached and the dataset is not in the local cache. Either run "
    "`compt data snapshot --tasks <tasks> --out DIR` on a machine with internet access and copy DIR here, "
    "then train with `data.source=local data.dir=DIR`; or use the bundled demo data with `data.source=local`."
)
