"""``compt serve``: argument wiring only (the library: :mod:`compt.serving.server`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compt.evaluation.config import EVAL_MODES as MODES

SERVE_HELP = "serve every task of a trained run over HTTP (mixed-task batches)"
SERVE_DESCRIPTION = (
    "Load the run's backbone and prompt bank once and answer POST /predict (one row or a list of rows, "
    "each with its 'task' and that task's columns), GET /health and GET /tasks. Rows that arrive together "
    "are batched across tasks. SIGTERM or Ctrl-C drains the requests in flight and exits 0. "
    'Needs pip install -e ".[serve]".'
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``compt serve``."""
    parser = subparsers.add_parser("serve", help=SERVE_HELP, description=SERVE_DESCRIPTION)
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="run folder or bank folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--mode", choices=MODES, default=None, help="default: the run's eval.mode, else rank")
    parser.add_argument("--mask", default="total", help="evaluation mask: total, private, all_src, src{i}")
    parser.add_argument("--max-batch-size", type=int, default=32, help="rows in one batch at most (32)")
    parser.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="how long a row waits for others to batch with (5)"
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=1 << 20, help="largest request body taken (1 MiB)"
    )
    parser.add_argument(
        "--max-input-tokens",
        type=int,
        default=None,
        help="refuse rows longer than this (default: 4 × the input limit of the row's task)",
    )
    parser.add_argument("--backbone", default=None, help="override the backbone recorded in the bank")
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    from compt.errors import ComptError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ComptError(
            f'compt serve needs FastAPI and uvicorn ({err.name} is missing): pip install -e ".[serve]"'
        ) from None
    from compt.serving.server import ServeSettings, serve

    settings = ServeSettings(
        run=args.run,
        host=args.host,
        port=args.port,
        device=args.device,
        mode=args.mode,
        mask=args.mask,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_body_bytes=args.max_body_bytes,
        max_input_tokens=args.max_input_tokens,
        backbone=args.backbone,
    )
    return serve(settings)
