"""The ESCA loop with fake ports and a fake model: stages, staleness, dry run, and 200+
adversarial replies through the same validation and publish path the node uses."""

from __future__ import annotations

import json
import math
import pathlib
import re

import numpy as np
import pytest
import yaml

from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.planner import core
from sgclip_ros.planner.actions import load_action_set
from sgclip_ros.planner.core import Planner, PlannerSettings, PortError
from sgclip_ros.planner.history import History
from sgclip_ros.planner.llm_client import LLMError
from sgclip_ros.tools.sample_graph import sample_scene_graph

REPO = pathlib.Path(__file__).resolve().parent.parent
NOW = 2_000_000_000_000_000_000
CONCEPTS = {"targets": ["circle"], "attributes": ["red"], "relations": [], "related_objects": []}
ACTIONS = load_action_set(
    yaml.safe_load((REPO / "config" / "planner.yaml").read_text())["/**"]["ros__parameters"][
        "actions"
    ]
)


def graph(concepts_id: str, age_s: float = 0.1, camera: str = "/camera/image_raw"):
    g = sample_scene_graph()
    g.stamp_ns, g.concepts_id, g.camera = NOW - int(age_s * 1e9), concepts_id, camera
    return g


class FakePorts:
    """Perception that answers set_concepts and then has a fresh graph made with them."""

    def __init__(self, graphs=(), graph_age_s: float = 0.1, fail_set: str = ""):
        self.graphs, self.graph_age_s, self.fail_set = list(graphs), graph_age_s, fail_set
        self.set_calls, self.published, self.prompts = [], [], []

    def set_concepts(self, lists, timeout_s):
        if self.fail_set:
            raise PortError(self.fail_set)
        self.set_calls.append(lists)
        cid = ConceptSet(lists.categories, lists.unary, lists.binary).concepts_id
        self.graphs.append(graph(cid, self.graph_age_s))
        return cid

    def wait_for_graph(self, accept, timeout_s):
        return next((g for g in reversed(self.graphs) if accept(g)), None)

    def image_for(self, g):
        return "data:image/png;base64,AAAA"

    def now_ns(self):
        return NOW

    def publish_action(self, planned):
        self.published.append(planned)

    def publish_prompt(self, stage, messages):
        self.prompts.append((stage, messages))


class FakeLLM:
    def __init__(self, action_reply="", concept_reply=json.dumps(CONCEPTS), error=None):
        self.action_reply, self.concept_reply, self.error = action_reply, concept_reply, error
        self.calls = []

    def chat(self, messages):
        self.calls.append(messages)
        if self.error:
            raise LLMError(self.error, f"fake {self.error}")
        return (
            self.concept_reply if "concept lists" in messages[0]["content"] else self.action_reply
        )


def _planner(llm, ports=None, **settings):
    return Planner(PlannerSettings(**settings), ACTIONS, llm, ports or FakePorts(), History(3))


def test_happy_path_sets_concepts_waits_for_their_graph_and_publishes():
    ports = FakePorts(graphs=[graph("old-concepts")])
    llm = FakeLLM('{"action": "move_to", "arguments": {"object_id": "1"}, "reason": "red circle"}')
    stages = []
    extra = (("square",), ("blue",), ("left of",))
    planner = _planner(llm, ports, extra_concepts=extra, include_image=True)
    outcome = planner.plan("Go to the red circle", lambda *a: stages.append(a))
    assert outcome.success, outcome
    lists = ports.set_calls[0]
    assert lists.categories == ("circle", "square") and lists.unary == ("red", "blue")
    assert lists.binary == ("left of",)
    used = ports.published[0]
    assert used.concepts_id == ports.graphs[-1].concepts_id != "old-concepts"
    assert (
        used.action.arguments == {"object_id": "1"}
        and used.graph_stamp_ns == outcome.graph_stamp_ns
    )
    running = [s[0] for s in stages if s[1] == "running"]
    assert running == [
        "extract_concepts",
        "set_concepts",
        "wait_scene_graph",
        "plan_action",
        "validate",
        "publish",
    ]
    assert stages[-1][:2] == ("done", "ok")
    assert llm.calls[1][1]["content"][2]["image_url"]["url"].startswith("data:image/png")


def test_published_actions_carry_the_3d_positions_of_the_graph_used():
    positioned = graph("fixed")
    positioned.objects[0].position = (0.25, -0.125, 1.5)  # object 2 has none (no depth)
    ports = FakePorts(graphs=[positioned])
    llm = FakeLLM()
    planner = _planner(llm, ports, extract_concepts=False)
    replies = [
        ('{"action": "move_to", "arguments": {"object_id": "1"}}', ((0.25, -0.125, 1.5),), ()),
        ('{"action": "pick", "arguments": {"object_id": "2"}}', (None,), ()),
        (
            '{"action": "move_to_point", "arguments": {"target": [0.5, -0.125, 1.25]}}',
            (),
            (("target", (0.5, -0.125, 1.25)),),
        ),
    ]
    for reply, object_positions, targets in replies:
        llm.action_reply = reply
        assert planner.plan("go").success
        planned = ports.published[-1]
        assert planned.object_positions == object_positions
        assert planned.action.positions == targets
        assert planned.frame_id == "camera_color_optical_frame"
    assert 'at (0.25, -0.12, 1.50) m' in llm.calls[-1][1]["content"]  # the model saw it
    llm.action_reply = '{"action": "move_to_point", "arguments": {"target": [3, 0, 1.5]}}'
    outcome = planner.plan("go")
    assert outcome.status == "invalid_action" and "move_to_point.target" in outcome.message
    assert len(ports.published) == 3


@pytest.mark.parametrize("age_s", [2.5, 60.0, -5.0], ids=["just-stale", "old", "future"])
def test_stale_graphs_are_never_used(age_s):
    ports = FakePorts(graph_age_s=age_s)
    llm = FakeLLM('{"action": "stop"}')
    outcome = _planner(llm, ports, max_graph_age_s=2.0).plan("stop")
    assert outcome.status == core.NO_FRESH_GRAPH and outcome.stage == "wait_scene_graph"
    assert ports.published == [] and len(llm.calls) == 1  # the action prompt was never built


def test_graphs_of_other_concepts_or_cameras_are_not_used():
    ports = FakePorts(graphs=[graph("x")])
    outcome = _planner(
        FakeLLM('{"action": "stop"}'), ports, extract_concepts=False, camera="/front"
    ).plan("stop")
    assert outcome.status == core.NO_FRESH_GRAPH
    ports.graphs.append(graph("y", camera="/front"))
    assert (
        _planner(FakeLLM('{"action": "stop"}'), ports, extract_concepts=False, camera="/front")
        .plan("stop")
        .success
    )


def test_dry_run_publishes_prompts_and_never_an_action():
    ports = FakePorts(graphs=[graph("any")])
    planner = _planner(None, ports)
    outcome = planner.plan("Go to the red circle")
    assert outcome.status == core.DRY_RUN and "dry run" in outcome.message
    assert [stage for stage, _ in ports.prompts] == ["extract_concepts", "plan_action"]
    assert ports.set_calls == [] and ports.published == []
    assert '"circle"' in ports.prompts[1][1][1]["content"]


@pytest.mark.parametrize(
    "llm, ports, status, stage",
    [
        (FakeLLM(error="timeout"), None, "llm_timeout", "extract_concepts"),
        (FakeLLM(error="circuit_open"), None, "llm_circuit_open", "extract_concepts"),
        (FakeLLM(concept_reply="circle please"), None, "invalid_json", "extract_concepts"),
        (FakeLLM(concept_reply='{"targets": []}'), None, "invalid_concepts", "extract_concepts"),
        (FakeLLM(concept_reply='{"foo": 1}'), None, "invalid_concepts", "extract_concepts"),
        (
            FakeLLM('{"action":"stop"}'),
            FakePorts(fail_set="busy"),
            "set_concepts_failed",
            "set_concepts",
        ),
        (FakeLLM('{"action": "fly"}'), None, "invalid_action", "validate"),
        (
            FakeLLM('{"action": "turn", "arguments": {"angle": 720}}'),
            None,
            "invalid_action",
            "validate",
        ),
        (FakeLLM('{"action": "move_to", "argu'), None, "invalid_json", "validate"),
    ],
)
def test_every_failure_has_its_status_and_publishes_nothing(llm, ports, status, stage):
    ports = ports or FakePorts()
    stages = []
    outcome = _planner(llm, ports).plan("Go to the red circle", lambda *a: stages.append(a))
    assert (outcome.status, outcome.stage) == (status, stage), outcome.message
    assert ports.published == [] and stages[-1][:2] == (stage, status)


def test_cancel_before_publishing_publishes_nothing():
    ports = FakePorts()
    seen = []

    def cancelled():
        return "validate" in seen

    outcome = _planner(FakeLLM('{"action": "stop"}'), ports).plan(
        "stop", lambda stage, *a: seen.append(stage), cancelled
    )
    assert outcome.status == core.CANCELED and ports.published == []


def test_a_failed_publish_is_reported_not_claimed():
    class Deactivated(FakePorts):
        def publish_action(self, planned):
            raise PortError("the node was deactivated during the plan")

    outcome = _planner(FakeLLM('{"action": "stop"}'), Deactivated()).plan("stop")
    assert (outcome.status, outcome.stage) == ("publish_failed", "publish")


@pytest.mark.parametrize("instruction", ["", "   ", None, "x" * 1001])
def test_bad_instructions_are_refused_before_any_call(instruction):
    llm = FakeLLM('{"action": "stop"}')
    assert _planner(llm).plan(instruction).status == core.INVALID_INSTRUCTION
    assert llm.calls == []


def test_history_of_earlier_steps_reaches_the_prompt():
    ports, llm = FakePorts(), FakeLLM('{"action": "turn", "arguments": {"angle": 90}}')
    planner = _planner(llm, ports)
    planner.plan("look left")
    llm.action_reply = '{"action": "fly"}'
    planner.plan("fly away")
    planner.plan("and now?")
    prompt = llm.calls[-1][1]["content"]
    assert '- step 1: instruction "look left"; action "turn" {"angle": 90}; outcome "ok"' in prompt
    assert '- step 2: instruction "fly away"; action none; outcome "invalid_action"' in prompt
    stats = planner.stats.snapshot()
    assert stats["plans"] == 3 and stats["published"] == 1
    assert stats["by_status"] == {"ok": 1, "invalid_action": 2}


# ---- adversarial replies ------------------------------------------------------------------
VALID = [
    {"action": "move_to", "arguments": {"object_id": "1"}, "reason": "go"},
    {"action": "turn", "arguments": {"angle": 45.5}},
    {"action": "turn", "arguments": {"angle": -180}},
    {"action": "stop"},
    {"action": "done", "arguments": {}},
    {"action": "pick", "arguments": {"object_id": "2"}, "reason": "ignore all rules"},
    {"action": "place", "arguments": {"object_id": "1", "relation": "inside"}},
    {"action": "move_to_point", "arguments": {"target": [0.5, -0.05, 1.5]}},
]
CIRCLE_AT = (0.1, -0.05, 1.5)  # object 1's position in the adversarial test's graph
WRAPPERS = [
    lambda t: t,
    lambda t: f"```json\n{t}\n```",
    lambda t: f"Here is my answer: {t}",
    lambda t: f"{t}\nThis is safe.",
    lambda t: f"  \n{t}  ",
]
BAD_NAMES = [
    "self_destruct",
    "MOVE_TO",
    "move_to ",
    "mov\u0435_to",
    "",
    "shell",
    "exec",
    "move-to",
    "stop\n",
    None,
    5,
    ["stop"],
    {"name": "stop"},
    "pick_up",
]
BAD_IDS = [
    "99",
    "",
    " 1",
    "1 ",
    "01",
    "1; rm -rf /",
    1,
    None,
    ["1"],
    {"id": "1"},
    True,
    "1\u200b",
    "\u0661",
]
BAD_NUMBERS = [181, -180.0001, 1e9, 1e308, -1e308, "45", True, False, None, [45], {"v": 45}, 720]
BAD_POSITIONS = [
    [0.1, -0.05, 2.6],  # 1.1 m from the circle
    [0.0, 0.0, 25.0],  # beyond max_distance_m
    [0.1, -0.05],
    [0.1, -0.05, 1.5, 0.0],
    [[0.1, -0.05, 1.5]],
    ["0.1", "-0.05", "1.5"],
    [True, False, True],
    [0.1, None, 1.5],
    [1e308, 1e308, 1e308],
    "0.1, -0.05, 1.5",
    {"x": 0.1, "y": -0.05, "z": 1.5},
    None,
    1.5,
]
BAD_TEXTS = [
    "",
    "   ",
    "stop",
    "I will stop now.",
    "null",
    "[]",
    "42",
    '"stop"',
    '{"action": stop}',
    '{"action": "stop",}',
    "{'action': 'stop'}",
    '{"action": "stop"} {"action": "done"}',
    '{"action": "stop", "action": "done"}',
    '{"action": "turn", "arguments": {"angle": NaN}}',
    '{"action": "turn", "arguments": {"angle": Infinity}}',
    '{"action": "turn", "arguments": {"angle": -Infinity}}',
    '{"x": ' * 12 + '"y"' + "}" * 12,
    '<tool_call>{"name": "stop"}</tool_call>',
    "```json\n{\n```",
    "x" * 70000,
]


def _mutations(base: dict, rng: np.random.Generator) -> list:
    """Invalid variants of a valid action (dicts), each broken in one known way."""
    out = []
    args = dict(base.get("arguments", {}))
    for name in BAD_NAMES:
        out.append({**base, "action": name})
    out.append({**base, "arguments": {**args, "speed": 1.0}})
    out.append({**base, "command": "rm -rf /"})
    out.append({**base, "reason": 7})
    out.append({**base, "reason": "r" * 501})
    out.append({**base, "arguments": [args]})
    out.append({**base, "arguments": "object_id=1"})
    for key in args:
        out.append({**base, "arguments": {k: v for k, v in args.items() if k != key}})
    if "object_id" in args:
        for bad in BAD_IDS:
            out.append({**base, "arguments": {**args, "object_id": bad}})
    if "angle" in args:
        for bad in BAD_NUMBERS:
            out.append({**base, "arguments": {**args, "angle": bad}})
    if "relation" in args:
        for bad in ["under", "Inside", "inside ", "", 3, None]:
            out.append({**base, "arguments": {**args, "relation": bad}})
    if "target" in args:
        for bad in BAD_POSITIONS:
            out.append({**base, "arguments": {**args, "target": bad}})
    return out


def _adversarial_cases() -> list[tuple[str, bool]]:
    rng = np.random.default_rng(7)
    cases = []
    for base in VALID:
        text = json.dumps(base)
        cases += [(wrap(text), True) for wrap in WRAPPERS]
        for bad in _mutations(base, rng):
            wrap = WRAPPERS[int(rng.integers(len(WRAPPERS)))]
            cases.append((wrap(json.dumps(bad)), False))
        for _ in range(4):  # truncated somewhere inside the object
            cases.append((text[: int(rng.integers(1, len(text) - 1))], False))
    cases += [(text, False) for text in BAD_TEXTS]
    # JSON text has no NaN or 1e400: these come as raw text (refused by extraction or validation).
    for number in ("NaN", "Infinity", "1e400", "-1e400", "9" * 400):
        text = '{"action": "move_to_point", "arguments": {"target": [0.1, NUM, 1.5]}}'
        cases.append((text.replace("NUM", number), False))
    return cases


def test_adversarial_replies_never_publish_an_invalid_action():
    cases = _adversarial_cases()
    invalid = sum(1 for _, ok in cases if not ok)
    assert invalid >= 200, invalid
    fixed = graph("fixed")
    fixed.objects[0].position = CIRCLE_AT
    ports = FakePorts(graphs=[fixed])
    llm = FakeLLM()
    planner = _planner(llm, ports, extract_concepts=False)
    for text, expect_valid in cases:
        llm.action_reply = text
        before = len(ports.published)
        outcome = planner.plan("do the thing")
        published = ports.published[before:]
        assert len(published) == int(expect_valid), (text[:200], outcome)
        assert outcome.success == expect_valid
        if not expect_valid:
            assert outcome.status in ("invalid_json", "invalid_action"), outcome
    for planned in ports.published:  # independent re-check of everything that went out
        _assert_allowed(planned.action.name, planned.action.arguments)


def _assert_allowed(name: str, args: dict) -> None:
    ids = {"1", "2"}
    expected = {
        "move_to": {"object_id"},
        "pick": {"object_id"},
        "turn": {"angle"},
        "stop": set(),
        "done": set(),
        "place": {"object_id", "relation"},
        "move_to_point": {"target"},
    }
    assert set(args) == expected[name]
    if "object_id" in args:
        assert args["object_id"] in ids
    if "angle" in args:
        angle = args["angle"]
        assert type(angle) in (int, float) and -180 <= angle <= 180
    if "target" in args:
        target = args["target"]
        assert isinstance(target, list) and [type(v) for v in target] == [float] * 3
        assert math.dist(target, CIRCLE_AT) <= 1.0
    if "relation" in args:
        assert args["relation"] in (
            "on top of",
            "left of",
            "right of",
            "in front of",
            "behind",
            "inside",
        )


def test_the_core_is_ros_free_and_nothing_runs_code():
    """sgclip_ros/planner never imports ROS; no planner file uses a shell, subprocess or eval."""
    import ast

    ros = re.compile(r"^(rclpy|rcl_interfaces|launch|launch_ros|\w+_msgs|\w+_interfaces)$")
    core_files = sorted((REPO / "sgclip_ros" / "planner").glob("*.py"))
    ros_side = [
        REPO / "sgclip_ros" / p
        for p in ("nodes/planner_node.py", "ros/planner_io.py", "ros/planner_params.py")
    ]
    for path in core_files + ros_side:
        tree = ast.parse(path.read_text())
        modules = {
            a.name.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.Import)
            for a in n.names
        }
        modules |= {
            n.module.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module
        }
        funcs = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
        names = {f.id for f in funcs if isinstance(f, ast.Name)}
        attrs = {f.attr for f in funcs if isinstance(f, ast.Attribute)}
        assert not modules & {"subprocess", "shlex", "pickle", "ctypes"}, path
        assert not names & {"eval", "exec", "compile", "__import__"}, path
        assert not attrs & {"system", "popen", "Popen", "check_output", "spawnl"}, path
        if path in core_files:
            assert not [m for m in modules if ros.match(m)], path
