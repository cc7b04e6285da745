"""The ``compt`` command: one sub-command per area, each registered by the area's ``cli`` module.

Every ``cli`` module exposes ``add_parser(subparsers) -> None``, which adds its sub-command(s) and sets
``func`` on each parser to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
A ``cli`` module holds argument wiring only and imports its library inside ``func``, so ``compt --help``
imports neither torch nor Lightning.

A :class:`~compt.errors.ComptError` (a user's mistake) or an environment error (a full disk, a read-only file
system, no permission: :func:`compt.atomic.environment_error`) is printed as one ``compt: <message>`` line
with exit code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from compt.errors import ComptError

#: the modules that define ``add_parser``, in ``compt --help`` order
CLI_MODULES = (
    "compt.data.cli",  # compt data snapshot|check
    "compt.inference.cli",  # compt evaluate, compt predict, compt export
    "compt.report.cli",  # compt report
    "compt.serving.cli",  # compt serve
    "compt.sweeps.cli",  # compt sweep list|names
)

#: exit code of a command stopped by a ComptError
USER_ERROR_EXIT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compt",
        description="ComPT: multi-task prompt tuning by modular prompt composition. "
        "Training runs through `python train.py ...` (Hydra); this command holds the tools around it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in CLI_MODULES:
        importlib.import_module(module_name).add_parser(sub)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; a :class:`ComptError` becomes one ``compt: ...`` line on stderr."""
    from compt.atomic import environment_error

    try:
        return int(args.func(args) or 0)
    except (ComptError, OSError) as err:  # OSError: a full disk, a read-only or forbidden folder (else a bug)
        error = err if isinstance(err, ComptError) else environment_error(err)
        if error is None:
            raise
        print(f"compt: {error}", file=sys.stderr)
        return USER_ERROR_EXIT


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
