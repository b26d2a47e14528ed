"""`api_key_env` must be an upper-case variable NAME; anything key-shaped fails without being
repeated in the error, the log, /diagnostics or a parameter-set reason (the planner node runs
in this process, with no executor: its lifecycle callbacks are called directly)."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from sgclip_ros.planner.health import planner_values
from sgclip_ros.planner.llm_client import valid_env_name
from sgclip_ros.ros.planner_params import SPECS, api_key_env_problem

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("needs_install")]

# Shapes of real keys (Groq, Hugging Face, Google, OpenAI) and names with lower case.
KEY_SHAPED = ["gsk_abc123", "hf_AbCdEf", "AIzaSyABC-def", "sk-live", "openai_api_key", "Key_1"]
NAMES = ["OPENAI_API_KEY", "_X1", "GROQ_API_KEY", ""]


@pytest.mark.parametrize("value", KEY_SHAPED + ["1ABC", "A B", "A-B", "X" * 200])
def test_key_shaped_values_are_refused_without_being_quoted(value):
    assert not valid_env_name(value)
    problem = api_key_env_problem(value)
    assert problem and value not in problem and "A-Z" in problem
    assert SPECS["api_key_env"].check(value) == problem  # the live parameter-set path


@pytest.mark.parametrize("name", NAMES)
def test_upper_case_names_are_accepted(name):
    assert valid_env_name(name) and api_key_env_problem(name) is None
    assert SPECS["api_key_env"].check(name) is None


@pytest.fixture
def planner(ros_domain):
    """A factory of configured-or-not PlannerNodes with the given api_key_env."""
    from sgclip_ros.nodes.planner_node import PlannerNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    nodes = []

    def make(api_key_env: str) -> PlannerNode:
        overrides = [
            Parameter("api_key_env", value=api_key_env),
            Parameter("base_url", value="http://127.0.0.1:9/v1"),  # never called
        ]
        node = PlannerNode(
            f"planner_{len(nodes)}", context=context, parameter_overrides=overrides
        )
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown(context=context)


def _everything_said(node, capfd) -> str:
    """The node's error, its diagnostics values and what it wrote to stdout/stderr."""
    out, err = capfd.readouterr()
    values = planner_values(node._status())
    return "\n".join([node.error, *values.values(), out, err])


@pytest.mark.parametrize("value", KEY_SHAPED)
def test_configure_fails_and_nothing_repeats_the_value(planner, capfd, value):
    node = planner(value)
    assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
    said = _everything_said(node, capfd)
    assert "api_key_env must be" in node.error and "configure failed" in said
    assert value not in said
    # A live set is refused too (read-only here, and checked by the spec if it ever is not).
    result = node._on_set_parameters([Parameter("api_key_env", value=value)])
    assert not result.successful and value not in result.reason
    (result,) = node.set_parameters([Parameter("api_key_env", value=value)])
    assert not result.successful and value not in result.reason


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "_X1"])
def test_configure_accepts_variable_names(planner, capfd, monkeypatch, name):
    monkeypatch.setenv(name, "sk-secret-value-123")
    node = planner(name)
    assert node.on_configure(None) == TransitionCallbackReturn.SUCCESS, node.error
    said = _everything_said(node, capfd)
    assert f"from ${name} (set)" in said and "sk-secret-value-123" not in said
    assert planner_values(node._status())["api_key_env"] == name
