"""The run's config: the keys a user types (:mod:`~compt.config.schema`), the run's library objects built once
from them (:mod:`~compt.config.run_config`), errors in the typed keys (:mod:`~compt.config.keys`) and
``train.py``'s command line checked against them (:mod:`~compt.config.command_line`).

Plain Python, Hydra and OmegaConf: nothing here imports Lightning. ``RunConfig`` and ``TrainSchema`` are
imported on first use.
"""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.config.run_config": ["RunConfig", "RunSettings"],
        "compt.config.schema": ["TrainSchema"],
    },
)
