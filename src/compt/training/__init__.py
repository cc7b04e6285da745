"""Training: the LightningModule, its data and callbacks, and the fit of one run (Lightning).

``from compt.training import ComptModule`` (Lightning's ``ComptModule.load_from_checkpoint(path)`` rebuilds a
trained run's module), ``RunConfig``, ``ComptDataModule`` and ``TrainSchema`` are imported on first use, so
importing this package (``train.py`` does, before the config is checked) loads no Lightning.
"""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.training.module": ["ComptModule"],
        "compt.training.datamodule": ["ComptDataModule"],
        "compt.config.run_config": ["RunConfig"],
        "compt.config.schema": ["TrainSchema"],
    },
)
