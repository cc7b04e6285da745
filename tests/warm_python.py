"""A warm interpreter for the end-to-end tests' ``train.py`` runs (:func:`tests.helpers.run_script`).

``python tests/warm_python.py`` imports the libraries every ``train.py`` run loads (torch, Lightning, torchmetrics,
transformers, datasets, Hydra: 5-6 s of CPU; never compt, and it computes nothing, so ``portable_cpu`` still takes
effect), then serves requests, one JSON line each on stdin: it forks a child that becomes ``python SCRIPT ARGS``
(the request's argv, environment, working directory, standard streams redirected to files) and runs the script
as ``__main__``, exiting as Python would (0, a ``SystemExit``'s code, 1 after a traceback). It replies with the
child's pid, then its exit code, one JSON line each. The child is a process of its own (its status, signals and
children: DDP ranks and launcher workers start fresh interpreters); what it shares with its siblings is the
interpreter's start, imports and hash seed.
"""

from __future__ import annotations

import json
import os
import runpy
import sys


def warm_up() -> None:
    """Import what every run imports (none of it computes: torch picks its kernels at its first operation)."""
    import datasets  # noqa: F401
    import hydra  # noqa: F401
    import pytorch_lightning  # noqa: F401
    import torchmetrics  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer  # noqa: F401


def become(request: dict) -> None:
    """In the forked child: become ``python argv...`` and run it (never returns)."""
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    script = os.path.abspath(sys.argv[0])
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")
    sys.exit(0)  # the script returned; a SystemExit or an exception raised above exits as Python would


def serve() -> None:
    warm_up()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            become(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
