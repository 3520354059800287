"""CI runs what a new user runs: the test command of the README's first bash block."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    """Shell command lines (comments and blanks dropped, trailing comments cut)."""
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run reads the command from the README (the second of its first bash block) and runs
    it; --print shows what it would run: the README's own line, which sets up and tests."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block, "README.md has no bash block"
    readme_cmds = _commands(block.group(1))
    assert len(readme_cmds) >= 2, readme_cmds
    printed = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
    assert printed == readme_cmds[1], (printed, readme_cmds)
    assert "scripts/test.sh" in printed  # the README's test command: set up, tests, then the gate
    ci_text = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci_text and "scripts/test.sh" not in ci_text  # read from the README, not a copy
