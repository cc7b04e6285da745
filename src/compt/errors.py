"""Every error compt raises for a user's input, under one base, :class:`ComptError`.

A ``ComptError`` is a mistake the user can fix (a missing model or dataset, an unknown task, a config value
that cannot work, a folder that is not a run); its message names the fix. ``train.py`` and every ``compt``
sub-command print it as one ``compt: <message>`` line and exit with a non-zero code; any other exception is a
bug and keeps its traceback.

Each class also keeps the built-in base it had before this hierarchy existed (``ValueError``,
``RuntimeError``, ``FileNotFoundError``), so ``except ValueError`` in callers still works.

This module is a leaf: it imports nothing, so any module (and the fast ``compt --help``) can use it.
"""

from __future__ import annotations


class ComptError(Exception):
    """A user's mistake or a missing resource; the message says what to do."""


class ConfigError(ComptError, ValueError):
    """A config value that cannot work (a typo'd key, a value out of range, an impossible combination).

    Its message names the key and the accepted values.
    """


class TaskError(ComptError, ValueError):
    """A task definition is invalid, or a row does not fit its task (unknown label, missing column)."""


class DataError(ComptError, ValueError):
    """The data of a task does not fit its definition (missing file or column, bad label, empty split)."""


class DataSourceError(DataError):
    """A dataset could not be obtained from its source (hub unreachable and not cached)."""


class BackboneNotFoundError(ComptError, RuntimeError):
    """The model could be found neither locally nor on the hub."""


class LaunchError(ComptError, RuntimeError):
    """A launch setting that cannot work (e.g. in-process DDP inside a ``-m`` sweep)."""


class InferenceError(ComptError, ValueError):
    """A trained run cannot be used as asked: ``compt predict`` / ``export`` / ``evaluate`` and
    ``sources.init_from`` (a task the bank was not trained on, a bank that does not fit, a bad input file)."""


class RunNotFoundError(InferenceError, FileNotFoundError):
    """A folder that is not a compt run folder (no ``results.json``, no ``.hydra/config.yaml``) or holds no
    prompt bank."""


class IncompleteRunError(InferenceError):
    """A run folder without a complete ``results.json`` (not run yet, still running, or failed)."""


class ExportError(ComptError, ValueError):
    """The bank cannot be exported as asked (the message says why and what to do)."""


class NoResultsError(ComptError, RuntimeError):
    """A folder holds no complete ``results.json`` at all (``compt report``)."""


class OutputWriteError(ComptError, OSError):
    """An output cannot be written: a full disk or quota, a read-only file system, no permission, a file or a
    dangling symbolic link where a folder should be (:mod:`compt.atomic`); the message names the path."""


class RunDiverged(ComptError, RuntimeError):
    """Training produced a non-finite loss or prompt parameter; the message names the step and the likely
    cause (the learning rates, with their values)."""

    def __init__(self, message: str, step: int = -1, learning_rates: dict[str, float] | None = None):
        super().__init__(message)
        self.step = step
        self.learning_rates = dict(learning_rates or {})


class RunInterrupted(ComptError, RuntimeError):
    """A stop signal (SIGTERM, SIGUSR1, SIGINT) ended the job; the message names the job, what was saved and how
    to resume. ``exit_code`` is the shell's code for that signal (128 + its number: 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class ClaimLost(ComptError, RuntimeError):
    """Another process took over this job's claim (:mod:`compt.runs.claims`): this process stops without writing
    anything more into the job's folder."""
