"""The compt model for a backbone's family: :class:`compt.models.seq2seq.ComptModel` for a T5-family encoder-decoder,
:class:`compt.models.causal.CausalComptModel` for a decoder-only causal LM. Both have the same interface (loss,
``generate``, ``score_candidates``), so everything above them takes either."""

from __future__ import annotations

from transformers import PreTrainedModel

from compt.adapters.bank import AdapterBank
from compt.models.backbone import backbone_family
from compt.models.causal import CausalComptModel
from compt.models.seq2seq import ComptModel
from compt.prompts.bank import PromptBank

#: the model class of each backbone family (:func:`compt.models.backbone.backbone_family`)
MODEL_CLASSES: dict[str, type[ComptModel]] = {cls.family: cls for cls in (ComptModel, CausalComptModel)}


def build_model(backbone: PreTrainedModel, bank: PromptBank, backbone_dropout: bool = True) -> ComptModel:
    """``bank`` in front of the frozen ``backbone``, in the model class of the backbone's family; a PEFT adapter's
    bank (:class:`~compt.adapters.bank.AdapterBank`) is attached to the backbone, after the dropout switch (which
    leaves the adapter's own dropout alone)."""
    model = MODEL_CLASSES[backbone_family(backbone)](backbone, bank, backbone_dropout)
    if isinstance(bank, AdapterBank):
        bank.attach(backbone)
    return model


__all__ = ["MODEL_CLASSES", "build_model"]
