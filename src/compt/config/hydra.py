"""What Hydra needs from compt before it composes ``conf/train.yaml``: the schema in its ConfigStore
(``compt_schema``) and the resolvers compt's configs use (``compt_job_folder``: a sweep job's folder name;
``compt_sqlite``: the Optuna study's storage).

Nothing is registered on import: ``train.py`` and ``compt sweep`` call :func:`register_config` before Hydra
composes anything (the tests' ``conftest.py`` too). The processes a launcher starts for its jobs (joblib,
submitit) receive both with Hydra's own state (``Singleton.get_state``: the ConfigStore and OmegaConf's
resolvers), before Hydra names a job's folder there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import ListConfig, OmegaConf

from compt.config.schema import TrainSchema
from compt.runs.identity import job_dirname

SCHEMA_NAME = "compt_schema"
"""The name ``conf/train.yaml`` lists first in its defaults: :class:`TrainSchema` in Hydra's ConfigStore."""

JOB_FOLDER_RESOLVER = "compt_job_folder"
"""OmegaConf resolver naming a sweep job's folder from its overrides (``conf/hydra/default.yaml``:
``hydra.sweep.subdir``, :func:`job_folder`)."""

SQLITE_RESOLVER = "compt_sqlite"
"""OmegaConf resolver giving an sqlite URL for a file path (``conf/hparams_search/optuna.yaml``: the study)."""

MAX_FOLDER_NAME = 255
"""Bytes in one folder name on common file systems (ext4, xfs, Lustre, GPFS)."""


def job_folder_name(override_dirname: str) -> str:
    """One folder name for a sweep job from its overrides (Hydra's ``override_dirname``), never a path.

    ``/`` in a value (``model.name=google/t5-base-lm-adapt``, ``data.root=/scratch/glue``) would nest folders:
    it becomes ``%2F``. A name over 255 bytes (a long override list) is cut to 200 bytes plus ``~`` and 12 hex
    digits of its SHA-256, so it stays unique and stable across relaunches; the job's full overrides are in
    its ``results.json`` and ``.hydra/overrides.yaml``.
    """
    name = override_dirname.replace("%", "%25").replace("/", "%2F")
    encoded = name.encode()
    if len(encoded) <= MAX_FOLDER_NAME:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    return f"{encoded[:200].decode(errors='ignore')}~{digest}"


def job_folder(overrides: Any) -> str:
    """A sweep job's folder name from its overrides (``hydra.overrides.task``): the ones that can change its
    result (:func:`compt.runs.identity.job_dirname`), escaped by :func:`job_folder_name`. A string is taken as an
    ``override_dirname`` already joined (a config written for the earlier ``${compt_job_folder:${hydra.job.override_dirname}}``)."""
    if isinstance(overrides, list | tuple | ListConfig):
        return job_folder_name(job_dirname(str(o) for o in overrides))
    return job_folder_name(str(overrides))


def sqlite_url(path: str) -> str:
    """``sqlite:///<path>`` for an SQLAlchemy engine, creating the file's folder (sqlite does not).

    The Optuna study of ``hparams_search=optuna`` lives in ``<sweep dir>/optuna.db``, and the sweeper opens it
    before any job has created the sweep folder.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def register_job_folder_resolver() -> None:
    """Make ``${compt_job_folder:...}`` and ``${compt_sqlite:...}`` (:func:`sqlite_url`) known to OmegaConf
    (idempotent)."""
    if not OmegaConf.has_resolver(JOB_FOLDER_RESOLVER):
        OmegaConf.register_new_resolver(JOB_FOLDER_RESOLVER, job_folder)
    if not OmegaConf.has_resolver(SQLITE_RESOLVER):
        OmegaConf.register_new_resolver(SQLITE_RESOLVER, lambda path: sqlite_url(str(path)))


def register_schema(schema: type | None = None) -> None:
    """Store the schema (default :data:`~compt.config.schema.TrainSchema`) in Hydra's ConfigStore as
    ``compt_schema`` (idempotent); any code that composes ``conf/train.yaml`` (``train.py``, ``compt sweep``,
    the tests) needs it."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=schema or TrainSchema)


def register_config() -> None:
    """Everything Hydra needs from compt: the schema (:func:`register_schema`) and the resolvers
    (:func:`register_job_folder_resolver`). Idempotent."""
    register_schema()
    register_job_folder_resolver()
