"""The errors compt raises for a user's input (a missing model or dataset, an unknown task, a
config value that cannot work, a bad launch).

Their messages name the fix; entry points print them without a stack trace.
"""

from __future__ import annotations

from compt.backbone import BackboneNotFoundError
from compt.data.errors import DataError
from compt.fields import ConfigError
from compt.tasks import TaskError
from compt.training.launch import LaunchError

USER_ERRORS: tuple[type[Exception], ...] = (
    BackboneNotFoundError,
    ConfigError,
    DataError,
    TaskError,
    LaunchError,
)
