"""CI runs what the README tells a contributor to run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    command = readme[4].split("  #")[0].strip()  # the second command of the first block
    assert command.startswith("pip install -c requirements/ci.txt ") and "pytest" in command
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
