"""PEFT adapters trained in the place of prompts: ``method=lora`` (``LoraConfig``) and ``method=prefix``
(``PrefixTuningConfig``, P-Tuning v2's deep prompts), on either backbone family, under compt's protocol.

Plain PyTorch + PEFT (no Lightning, no Hydra). :mod:`~compt.adapters.options` (the settings; no torch),
:mod:`~compt.adapters.peft_setup` (the one place that imports PEFT) and :mod:`~compt.adapters.bank` (the
adapter in a prompt bank's place). The names below are imported on first use.
"""

from compt._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.adapters.options": ["ADAPTER_OPTIONS", "LoraOptions", "PrefixOptions", "adapter_options"],
        "compt.adapters.bank": ["AdapterBank"],
    },
)
