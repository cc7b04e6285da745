"""README.md's commands work as typed: after its set-up command (``make demo`` then activating ``.venv``),
every ``python train.py`` line names known keys and options, and every ``compt`` line parses."""

from __future__ import annotations

import re
import shlex

import pytest

from compt.cli import build_parser
from compt.config.command_line import check_overrides
from compt.config.schema import TrainSchema
from tests.helpers import REPO_ROOT

#: the README's placeholders, filled in as a user would (longest first)
FILLED = {"RUN_DIR": "runs/a", "<sweep>": "s", "SWEEP": "table1", "OUT_DIR": "out", "DIR": "d"}


def readme_commands() -> list[str]:
    """Every command line of README.md's bash blocks, without its comment."""
    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.split(" #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def filled(command: str) -> list[str]:
    """The command's words as a user types them: placeholders filled in, optional ``[...]`` parts and
    ``...`` left out."""
    command = re.sub(r"\s\[[^\]]*\]", "", command).replace(" ...", "")
    for placeholder, value in FILLED.items():
        command = command.replace(placeholder, value)
    return shlex.split(command)


def test_the_readme_activates_the_venv_before_its_first_python_or_compt_command():
    """``make demo`` installs into .venv: ``python train.py`` needs it active (else: no module named hydra)."""
    commands = readme_commands()
    first = next(i for i, c in enumerate(commands) if c.startswith(("python ", "compt ", "pip ")))
    activate = commands.index("source .venv/bin/activate")
    assert commands.index("make demo") < activate < first


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith("python train.py")])
def test_every_training_command_of_the_readme_names_known_keys_and_options(command):
    words = [w for w in filled(command)[2:] if w != "key=a,b" and not w.startswith("resume=")]
    check_overrides(words, TrainSchema, REPO_ROOT / "conf")  # (train.py expands resume= before this check)


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith("compt ")])
def test_every_compt_command_of_the_readme_parses(command):
    args = build_parser().parse_args(filled(command)[1:])
    assert callable(args.func)
