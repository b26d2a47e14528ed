"""The README is a short quickstart, and every command in it is run by a test or by CI."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

from readme import README, REPO, readme, readme_commands, readme_shell


def _test_strings() -> tuple[set[str], set[str]]:
    """(first arguments of readme()/readme_shell() calls, every string constant) in test/*.py."""
    asked, constants = set(), set()
    for path in sorted((REPO / "test").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                constants.add(node.value)
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") in {"readme", "readme_shell"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                asked.add(node.args[0].value)
    return asked, constants


def _run_by_ci() -> set[str]:
    ci = (REPO / ".ci" / "run").read_text()
    return {line.strip() for line in ci.splitlines() if line.strip().startswith("make ")}


def test_readme_is_a_short_page_that_opens_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines"
    assert readme_commands()[:2] == ["make demo", "make test"]


def test_every_readme_command_is_run_by_a_test_or_by_ci():
    commands = set(readme_commands())
    asked, constants = _test_strings()
    assert commands - (constants | _run_by_ci()) == set(), "README commands no test runs"
    assert asked <= commands, "tests ask for commands the README no longer shows"


def test_readme_and_docs_links_point_at_files():
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_readme_parser_joins_continuations_and_drops_comments():
    text = "```bash\nmake demo   # run it\n# a note\nros2 run a b \\\n  --x 1\necho '# kept'\n```\n"
    assert readme_commands(text) == ["make demo", "ros2 run a b --x 1", "echo '# kept'"]


def test_the_install_space_commands_after_make():
    shell = " && ".join(
        [
            readme_shell(". install/setup.sh"),
            readme_shell(
                '.venv/bin/python -c "from sgclip_ros.msg import SceneGraph; print(SceneGraph())"'
            ),
        ]
    )
    done = subprocess.run(["bash", "-c", shell], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sgclip_ros.msg.SceneGraph(header=")


def test_the_trainer_quickstart_end_to_end(tmp_path):
    """Train the tiny recipe, make held-out clips, evaluate, export ONNX: as written, with the
    output paths moved into a temporary folder."""
    runs, heldout = str(tmp_path / "runs" / "tiny"), str(tmp_path / "heldout")
    metrics, mine = tmp_path / "metrics.json", str(tmp_path / "mine")
    steps = [
        readme(
            "python -m training.train --config training/configs/tiny.yaml --out runs/tiny",
            {"runs/tiny": runs},
        ),
        readme(
            "python -m training.synth --out data/heldout --videos 8 --seed 7 --frames 6",
            {"data/heldout": heldout},
        ),
        readme(
            "python -m training.evaluate --data data/heldout --checkpoint runs/tiny/model "
            "--concepts config/concepts/shapes.yaml --out metrics.json",
            {"data/heldout": heldout, "runs/tiny": runs, "metrics.json": str(metrics)},
        ),
        readme(
            "python -m training.export --checkpoint runs/tiny/model --out models/mine "
            "--formats onnx",
            {"runs/tiny": runs, "models/mine": mine},
        ),
    ]
    for argv in steps:
        assert argv[:2] == ["python", "-m"]
        done = subprocess.run([sys.executable, *argv[1:]], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, f"{argv}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    scores = json.loads(metrics.read_text())
    assert 0.0 <= scores["category_r1"] <= 1.0
    assert (tmp_path / "mine" / "onnx" / "manifest.json").is_file()
    assert (tmp_path / "mine" / "model.safetensors").is_file()
