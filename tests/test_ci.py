"""CI runs what a new user runs: the test command of the README's first bash block."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    """Shell command lines (comments and blanks dropped, trailing comments cut)."""
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run's one command is the README's test command (the second of its first bash block),
    the one a new user runs: it sets up, runs the tests, then the gate."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block, "README.md has no bash block"
    readme_cmds = _commands(block.group(1))
    assert len(readme_cmds) >= 2, readme_cmds
    ci_cmds = [c for c in _commands((ROOT / ".ci" / "run").read_text())
               if not c.startswith(("set ", "cd "))]
    assert ci_cmds == [readme_cmds[1]], (ci_cmds, readme_cmds)
    assert "scripts/test.sh" in readme_cmds[1]  # set up, tests, then the gate
