"""The run's config: the keys a user types (:mod:`~compt.config.schema`; the pass-through ones declared on the
library fields they set, :mod:`~compt.config.knobs`), the run's library objects built once from them
(:mod:`~compt.config.run_config`), errors in the typed keys (:mod:`~compt.config.keys`), ``train.py``'s command
line checked against them (:mod:`~compt.config.command_line`), what Hydra needs before it composes
(:mod:`~compt.config.hydra`: the schema and the resolvers, registered by ``train.py`` and ``compt sweep``, never
on import) and the objects a config names by ``_target_`` (:mod:`~compt.config.targets`).

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
