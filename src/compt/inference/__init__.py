"""Using a trained run: predictions (:mod:`~compt.inference.predictor`, ``compt predict``; rows of several tasks
share batches), the export of composed prompts as a PEFT adapter or prompt embeddings
(:mod:`~compt.inference.export`, ``compt export``), and re-evaluating the run under masks
(:mod:`~compt.inference.rerun` + :mod:`~compt.inference.mask_table`, ``compt evaluate``). Serving a run over
HTTP is :mod:`compt.serving`.

    from compt.inference import load_for_inference
    predictor = load_for_inference("multirun/demo/k=8,method=ssum,seed=1")

The names below are imported on first use (``compt predict --help`` stays fast).
"""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.errors": ["InferenceError", "ExportError"],
        "compt.inference.predictor": ["PromptPredictor", "load_for_inference"],
        "compt.inference.rows": ["read_rows", "row_chunks"],
        "compt.inference.export": ["ExportedPrompt", "composed_prompt", "export_embeds", "export_peft"],
        "compt.inference.rerun": ["evaluate_run"],
    },
)
