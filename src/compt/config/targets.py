"""Objects a config names by ``_target_`` (the ``logger`` entries, extra ``callbacks``), made with
``hydra.utils.instantiate``. A target that cannot be made is a :class:`ConfigError` naming the config key, the
class and the cause (a typo, a package that is not installed), printed as one ``compt:`` line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from compt.errors import ConfigError


def target_entries(section: Mapping[str, Any] | None, where: str) -> dict[str, DictConfig]:
    """The ``_target_`` entries of a config section (a DictConfig or the plain dict of a typed config), by key
    (``logger.csv``, ``callbacks.early_stopping``).

    Scalar values beside them are settings, not objects (``callbacks.checkpoint_every_n_epochs``) and are left
    out; a mapping without ``_target_`` is an error.
    """
    entries = {}
    for key, value in OmegaConf.create(dict(section or {})).items():
        if not isinstance(value, DictConfig):
            continue
        if "_target_" not in value:
            raise ConfigError(
                f"{where}.{key} has no _target_ (the class to create, e.g. "
                "pytorch_lightning.callbacks.EarlyStopping); see conf/logger/ and conf/callbacks/"
            )
        entries[str(key)] = value
    return entries


def target_class(conf: DictConfig, where: str) -> type:
    """The class ``conf._target_`` names."""
    try:
        return get_class(str(conf._target_))
    except Exception as err:
        raise ConfigError(f"{where}: cannot import {conf._target_} ({_one_line(err)})") from None


def unset(conf: DictConfig, key: str) -> bool:
    """Whether ``conf`` leaves ``key`` to compt (missing or null)."""
    return conf.get(key) is None


def instantiate_target(conf: DictConfig, where: str, **kwargs: Any) -> Any:
    """``conf``'s object, with ``kwargs`` replacing its values; the config's containers are passed as plain
    lists and dicts, ``kwargs`` as they are (never instantiated themselves).

    Raises:
        ConfigError: the class cannot be imported, or refuses its arguments or a missing package (the cause
            is in the message).
    """
    try:
        factory = instantiate(conf, _convert_="all", _partial_=True)
        return factory(**kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
    except (ImportError, TypeError, ValueError) as err:  # a missing package, an unknown or bad argument
        cause = err
    raise ConfigError(f"{where}: cannot create {conf._target_}: {_one_line(cause)}")


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
