"""Launch files and the parameter YAML: correct for a real robot, checked without `ros2 launch`.

`launch`/`launch_ros` are not on PyPI. When they are importable (a ROS install) the launch
descriptions are generated; otherwise the files are checked structurally.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pathlib

import pytest
import yaml

from sgclip_ros.ros.params import PERCEPTION_PARAMS, SPECS, load_defaults

REPO = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))
LAUNCH_ARGUMENTS = (
    "namespace",
    "params_file",
    "camera_topic",
    "use_sim_time",
    "autostart",
    "model_dir",
    "backend",
    "device",
    "log_level",
)
FORBIDDEN_CALLS = {"eval", "exec", "system", "Popen", "run", "check_output", "ExecuteProcess"}


def _tree(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _calls(tree) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.id if isinstance(f, ast.Name) else getattr(f, "attr", ""))
    return names


def _declared_arguments(tree) -> set[str]:
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "DeclareLaunchArgument"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_launch_files_exist():
    assert {p.name for p in LAUNCH} >= {"sgclip.launch.py", "perception.launch.py"}


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_files_declare_arguments_and_run_no_subprocess(path):
    tree = _tree(path)
    assert any(
        isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
        for n in tree.body
    )
    assert not (_calls(tree) & FORBIDDEN_CALLS)
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not imported & {"subprocess", "shlex"}


def test_perception_launch_declares_the_documented_arguments():
    declared = _declared_arguments(_tree(REPO / "launch" / "perception.launch.py"))
    assert declared >= set(LAUNCH_ARGUMENTS)


def test_perception_launch_starts_an_installed_lifecycle_executable():
    tree = _tree(REPO / "launch" / "perception.launch.py")
    node_calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "LifecycleNode"
    ]
    assert len(node_calls) == 1
    kwargs = {k.arg: k.value for k in node_calls[0].keywords}
    assert kwargs["package"].value == "sgclip_ros"
    assert (REPO / "bin" / kwargs["executable"].value).is_file()
    assert "remappings" in kwargs and "parameters" in kwargs and "namespace" in kwargs


def _have_launch() -> bool:
    # The repository's own launch/ folder is a namespace package named `launch`: look deeper.
    try:
        import launch_ros  # noqa: F401
        from launch import LaunchDescription  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def launch_module():
    """Load a launch file as a module; needs launch/launch_ros (a ROS install, or `make build`
    from ../shared/ros2-tools). Skips without them, except in CI, where that fails."""
    if not _have_launch():
        reason = "launch/launch_ros are not importable: no ROS install and no built ros2 tools"
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)

    def load(path: pathlib.Path):
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_descriptions_generate(path, launch_module):
    module = launch_module(path)
    description = module.generate_launch_description()
    names = {argument.name for argument in description.get_launch_arguments()}
    assert names >= set(LAUNCH_ARGUMENTS), sorted(set(LAUNCH_ARGUMENTS) - names)


def test_launch_argument_overrides_keep_the_params_file_unless_given(launch_module):
    module = launch_module(REPO / "launch" / "perception.launch.py")
    given = {
        "use_sim_time": "true",
        "autostart": "",
        "model_dir": "mine",
        "backend": "",
        "device": "",
    }
    assert module.parameter_overrides(given) == {"use_sim_time": True, "model_dir": "mine"}
    given.update(autostart="False", device="cuda:1")
    assert module.parameter_overrides(given) == {
        "use_sim_time": True,
        "model_dir": "mine",
        "autostart": False,
        "device": "cuda:1",
    }
    with pytest.raises(ValueError, match="use_sim_time must be true or false"):
        module.parameter_overrides(given | {"use_sim_time": "yes"})


def test_every_parameter_is_documented_in_the_yaml_and_has_a_spec():
    defaults = load_defaults(REPO / "config" / "sgclip.yaml")
    assert set(defaults) == set(SPECS)
    lines = (REPO / "config" / "sgclip.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.strip().split(":")[0]
        if key in SPECS and not line.strip().startswith("#"):
            assert lines[i - 1].strip().startswith("#"), f"{key} has no comment above it"


def _yaml_marks(path) -> dict[str, str]:
    """key -> "live" or "read-only", as the comment block above the key says."""
    lines, marks = path.read_text().splitlines(), {}
    for i, line in enumerate(lines):
        key = line.strip().split(":")[0]
        if key not in SPECS or line.strip().startswith("#"):
            continue
        j, block = i - 1, []
        while j >= 0 and lines[j].strip().startswith("#"):
            block.append(lines[j])
            j -= 1
        text = " ".join(block)
        marks[key] = "live" if "(live)" in text else "read-only" if "(read-only)" in text else ""
    return marks


def test_the_yaml_live_marks_are_the_specs_live_flags():
    marks = _yaml_marks(REPO / "config" / "sgclip.yaml")
    assert set(marks) == set(SPECS)
    wrong = {k: m for k, m in marks.items() if m != ("live" if SPECS[k].live else "read-only")}
    assert not wrong, f"the YAML's marks disagree with ParamSpec.live: {wrong}"


def test_descriptors_carry_ranges_and_read_only_flags():
    defaults = load_defaults(REPO / "config" / "sgclip.yaml")
    for spec in PERCEPTION_PARAMS:
        desc = spec.descriptor(defaults[spec.name])
        assert desc.read_only == spec.read_only and desc.description
        if spec.low is not None:
            ranges = list(desc.integer_range) + list(desc.floating_point_range)
            assert len(ranges) == 1, spec.name
            assert ranges[0].from_value <= defaults[spec.name] <= ranges[0].to_value, spec.name
        if spec.choices:
            assert defaults[spec.name] in spec.choices
            assert spec.check("not-a-choice") is not None
    assert SPECS["model_dir"].read_only and not SPECS["concepts_file"].read_only


def test_default_concepts_file_and_yaml_are_loadable():
    from sgclip_ros.core.concepts import load_concepts

    defaults = load_defaults(REPO / "config" / "sgclip.yaml")
    load_concepts(REPO / defaults["concepts_file"])
    assert yaml.safe_load((REPO / "config" / "sgclip.yaml").read_text())["/**"]


# ---- planner ----------------------------------------------------------------------------------
def test_planner_is_launched_behind_use_planner():
    tree = _tree(REPO / "launch" / "sgclip.launch.py")
    assert _declared_arguments(tree) >= {"use_planner", "planner_params_file"}
    nodes = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "LifecycleNode"
    ]
    assert len(nodes) == 1
    kwargs = {k.arg: k.value for k in nodes[0].keywords}
    assert kwargs["executable"].value == "planner_node"
    assert (REPO / "bin" / "planner_node").is_file()
    condition = kwargs["condition"]
    assert condition.func.id == "IfCondition"
    assert condition.args[0].args[0].value == "use_planner"
    assert "parameters" in kwargs and "namespace" in kwargs


def test_every_planner_parameter_is_documented_and_has_a_spec():
    from sgclip_ros.ros.planner_params import PLANNER_PARAMS
    from sgclip_ros.ros.planner_params import SPECS as PLANNER_SPECS

    path = REPO / "config" / "planner.yaml"
    defaults = load_defaults(path)
    assert set(defaults) - {"actions"} == set(PLANNER_SPECS)
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.strip().split(":")[0]
        if key in PLANNER_SPECS and line.startswith("    ") and not line.startswith("     "):
            above = lines[i - 1].strip()
            assert above.startswith("#") or lines[i - 1].strip().split(":")[0] in PLANNER_SPECS
    for spec in PLANNER_PARAMS:
        desc = spec.descriptor(defaults[spec.name])
        if spec.low is not None:
            ranges = list(desc.integer_range) + list(desc.floating_point_range)
            assert len(ranges) == 1, spec.name
            assert ranges[0].from_value <= defaults[spec.name] <= ranges[0].to_value, spec.name
    assert PLANNER_SPECS["base_url"].read_only and PLANNER_SPECS["api_key_env"].read_only
    assert not PLANNER_SPECS["max_graph_age_s"].read_only
    assert defaults["base_url"] == ""  # shipped in dry-run mode: never acts until configured
