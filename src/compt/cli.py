"""The ``compt`` command: one sub-command per area, each registered by its own module.

Every area module exposes ``add_parser(subparsers) -> None`` that adds its sub-command and sets
``func`` on the parser to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
Sub-commands are imported lazily so that ``compt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command name -> module that defines ``add_parser``
SUBCOMMANDS: dict[str, str] = {
    "data": "compt.data.cli",
    "evaluate": "compt.evaluation.cli",
    "report": "compt.report.cli",
    "predict": "compt.inference",
    "export": "compt.export",
    "sweep": "compt.sweeps",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compt",
        description="ComPT: multi-task prompt tuning by modular prompt composition. "
        "Training runs through `python train.py ...` (Hydra); this command holds the tools around it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:  # an area not built yet: keep the others usable
            if err.name and err.name.startswith("compt"):
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
