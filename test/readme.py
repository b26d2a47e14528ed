"""The README's commands, so that tests run exactly what it shows.

A test asks for a command by its README text: `readme("ros2 topic echo /scene_graph")` fails
unless the README shows that command, and returns its argv. Placeholders such as BAG or
/path/to/my.yaml are replaced only after that check. test_readme.py checks that every README
command is asked for by some test (or run by .ci/run).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def readme_commands(text: str | None = None) -> list[str]:
    """Every command of the README's bash blocks: continuations joined, comments dropped."""
    text = README.read_text() if text is None else text
    commands = []
    for block in _BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            command = _strip_comment(line).strip()
            if command:
                commands.append(" ".join(command.split()))
    return commands


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a # inside quotes stays)."""
    if line.lstrip().startswith("#"):
        return ""
    for match in re.finditer(r"\s#", line):
        head = line[: match.start()]
        try:
            shlex.split(head)
        except ValueError:  # the # is inside quotes
            continue
        return head
    return line


def readme_shell(command: str, replace: dict[str, str] | None = None) -> str:
    """A README command as a shell string (for `bash -c`), placeholders replaced."""
    assert command in readme_commands(), f"the README does not show: {command}"
    for placeholder, value in (replace or {}).items():
        assert placeholder in command, f"{placeholder!r} is not in {command!r}"
        command = command.replace(placeholder, value)
    return command


def readme(command: str, replace: dict[str, str] | None = None) -> list[str]:
    """The argv of a README command as written, with ``replace`` applied to each argument."""
    argv = shlex.split(readme_shell(command))
    for placeholder, value in (replace or {}).items():
        assert any(placeholder in arg for arg in argv), f"{placeholder!r} is not in {command!r}"
        argv = [arg.replace(placeholder, value) for arg in argv]
    return argv
