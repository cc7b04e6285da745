"""The run's log: compt's and Lightning's messages go through :mod:`logging`, so Hydra's handlers put them
both on the console and in the run folder's ``train.log`` (Hydra's job log).

Lightning attaches its own console handler when it is imported before logging is configured (always, under
``train.py``), so its messages never reached ``train.log``; :func:`route_run_log` hands them to the root
logger's handlers instead. The summary table of a finished run is printed as before and written to
``train.log`` through a record the console handlers skip (:class:`FileOnly`).
"""

from __future__ import annotations

import logging

#: Lightning's loggers that install a console handler of their own
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")
#: attribute of a log record meant for log files only
FILE_ONLY = "compt_file_only"

log = logging.getLogger("compt.training")


class FileOnly(logging.Filter):
    """On a console handler: drops records marked :data:`FILE_ONLY` (they were printed already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, FILE_ONLY, False)


def route_run_log() -> None:
    """Send Lightning's messages to the root handlers (console and ``train.log``) and keep file-only records
    off the console handlers. Idempotent; call once logging is configured (each job of a sweep)."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # Lightning's own console handler
                logger.removeHandler(handler)
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        is_console = isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        )
        if is_console and not any(isinstance(f, FileOnly) for f in handler.filters):
            handler.addFilter(FileOnly())


def to_log_file(message: str, level: int = logging.INFO) -> None:
    """Write ``message`` to the run's log file only (it is printed, or raised, separately)."""
    log.log(level, "%s", message, extra={FILE_ONLY: True})


def report_summary(text: str) -> None:
    """Print a finished run's summary (stdout, as always) and write it to the run's log file."""
    print("\n" + text)
    to_log_file(text)
