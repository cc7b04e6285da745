"""The frozen backbone and the prompt bank in front of it (plain PyTorch): loading and freezing a backbone
(:mod:`~compt.models.backbone`), text -> token ids per family (:mod:`~compt.models.tokenization`), the seq2seq
model (:mod:`~compt.models.seq2seq`: ``ComptModel``), the decoder-only one (:mod:`~compt.models.causal`:
``CausalComptModel``), and the class for a backbone's family (:mod:`~compt.models.family`: ``build_model``).

The names below are imported on first use, so importing the package loads no torch.
"""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.models.backbone": ["TINY_CAUSAL_DIR", "TINY_MODEL_DIR", "backbone_family", "load_backbone"],
        "compt.models.seq2seq": ["ComptModel"],
        "compt.models.causal": ["CausalComptModel"],
        "compt.models.family": ["build_model"],
    },
)
