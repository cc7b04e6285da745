"""The project's own documents: a user's checkout cites nothing outside it, and every reference to the method
document names one of its sections."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import REPO_ROOT

#: what a user's checkout holds and reads (tests may read local data beside the checkout; generated files aside)
PROJECT = [REPO_ROOT / name for name in ("src", "conf", "docs", "experiments")] + [REPO_ROOT / "README.md"]
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".txt", ".json", ".toml", ".cfg"}
METHOD_DOC = REPO_ROOT / "docs" / "method.md"


def project_files() -> list[Path]:
    files = []
    for root in PROJECT:
        candidates = [root] if root.is_file() else root.rglob("*")
        files += [
            p
            for p in candidates
            if p.is_file()
            and p.suffix in TEXT_SUFFIXES
            and not any(part.endswith(".egg-info") or part == "__pycache__" for part in p.parts)
        ]
    return files


def test_the_project_refers_to_no_file_outside_the_checkout():
    offending = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path in project_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "METHOD.md" in line or "../shared" in line
    ]
    assert not offending, offending


def test_every_method_doc_reference_names_one_of_its_sections():
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", METHOD_DOC.read_text(encoding="utf-8"), re.M)}
    assert sections == set(range(1, 9))
    cited = set()
    for path in project_files():
        for first, last in re.findall(r"method\.md\)? §(\d+)(?:-(\d+))?", path.read_text(encoding="utf-8")):
            cited |= set(range(int(first), int(last or first) + 1))
    assert cited and cited <= sections, cited - sections
