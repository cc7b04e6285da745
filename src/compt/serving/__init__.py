"""Every task of a trained run over HTTP: ``compt serve`` (:mod:`~compt.serving.server`, FastAPI + uvicorn,
``pip install -e ".[serve]"``), the model in a process of its own (:mod:`~compt.serving.model_process`), its
batches of rows of any tasks (:mod:`~compt.serving.batching`), what a request
may hold (:mod:`~compt.serving.requests`) and a client of the standard library only
(:mod:`~compt.serving.client`).

    from compt.serving import ComptClient
    client = ComptClient("http://127.0.0.1:8000")
    client.predict({"task": "rte", "sentence1": "A man sleeps.", "sentence2": "A man rests."})

The names below are imported on first use (``compt serve --help`` stays fast, the client needs no torch).
"""

from compt._lazy import lazy_exports

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.serving.client": ["ComptClient"],
        "compt.serving.server": ["ServeSettings", "serve"],
    },
)
