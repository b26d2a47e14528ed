"""Planner-node parameter schema (defaults from ``config/planner.yaml``) and builders.

Reuses :class:`sgclip_ros.ros.params.ParamSpec`. The builders turn parameter values into the
ROS-free planner configuration; no rclpy import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sgclip_ros.planner.actions import ActionSet, ActionSetError, load_action_set
from sgclip_ros.planner.breaker import CircuitBreaker
from sgclip_ros.planner.core import PlannerSettings
from sgclip_ros.planner.llm_client import ENV_NAME_RULE, LLMConfig, valid_env_name
from sgclip_ros.ros.params import ParamSpec, load_defaults, resolve_share_path, share_dir


def api_key_env_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable ``api_key_env``, or None. Never quotes the value: it may be
    the key itself, pasted into the wrong field."""
    if valid_env_name(value):
        return None
    return f"api_key_env must be {ENV_NAME_RULE}; the value given is not shown"


@dataclass(frozen=True)
class _EnvNameSpec(ParamSpec):
    """A parameter holding an environment variable name (checked at configure and when set)."""

    def check(self, value) -> str | None:
        return api_key_env_problem(value)


P = ParamSpec
PLANNER_PARAMS = (
    P("autostart", "Configure and activate at start-up.", read_only=True),
    P("base_url", "OpenAI-compatible API base URL ('' = dry run).", read_only=True),
    P("model", "Model name sent to the API.", read_only=True),
    _EnvNameSpec(
        "api_key_env", "NAME of the environment variable holding the API key.", read_only=True
    ),
    P("timeout_s", "Seconds per LLM call, retries included.", read_only=True, low=0.1, high=120.0),
    P("max_retries", "Retries on connection errors, 429, 5xx.", read_only=True, low=0, high=10),
    P("backoff_s", "First retry delay (doubles).", read_only=True, low=0.0, high=30.0),
    P("breaker_failures", "Failed calls that open the breaker.", read_only=True, low=1, high=100),
    P("breaker_reset_s", "Seconds before a recovery probe.", read_only=True, low=0.0, high=3600.0),
    P(
        "max_response_bytes",
        "Largest accepted response body.",
        read_only=True,
        low=1024,
        high=67_108_864,
    ),
    P("temperature", "Sampling temperature.", read_only=True, low=0.0, high=2.0),
    P("max_tokens", "Most tokens per reply.", read_only=True, low=16, high=32768),
    P("json_mode", "Send response_format json_object.", read_only=True),
    P("actions_file", "YAML with the `actions` allow-list.", read_only=True),
    P("enabled_groups", "Action groups allowed ('*' = all).", read_only=True),
    P("max_reason_chars", "Longest accepted reason.", read_only=True, low=16, high=4000),
    P("extract_concepts", "Step 1-2: LLM concepts -> set_concepts."),
    P("max_concepts", "Most concepts per list from the LLM.", low=1, high=32),
    P("extra_categories", "Categories always added to the concept lists."),
    P("extra_attributes", "Attributes always added to the concept lists."),
    P("extra_relations", "Relations always added to the concept lists."),
    P("camera", "Use graphs of this camera only ('' = any)."),
    P("max_graph_age_s", "Oldest usable scene graph, seconds.", low=0.05, high=3600.0),
    P("graph_wait_s", "Seconds to wait for a usable graph.", low=0.1, high=600.0),
    P("set_concepts_timeout_s", "Seconds to wait for set_concepts.", low=0.1, high=600.0),
    P("history_length", "Past steps shown to the model.", low=0, high=100),
    P("scene_max_objects", "Objects listed in the prompt.", low=1, high=256),
    P("scene_max_relations", "Relations listed in the prompt.", low=0, high=1024),
    P("max_instruction_chars", "Longest accepted instruction.", low=1, high=10000),
    P("image_topic", "Annotated image topic to attach ('' = none).", read_only=True),
    P("image_max_side", "Longest image side sent, pixels.", low=32, high=4096),
    P("publish_prompts", "Also publish prompts on ~/prompt when not in dry run."),
    P("diagnostics_period_s", "Seconds between diagnostics.", read_only=True, low=0.1, high=60.0),
)
SPECS = {p.name: p for p in PLANNER_PARAMS}
LIVE_SETTINGS = {p.name for p in PLANNER_PARAMS if not p.read_only}


def planner_defaults() -> dict:
    return load_defaults(share_dir() / "config" / "planner.yaml")


def _words(values) -> tuple[str, ...]:
    return tuple(v for v in values if v and v.strip())  # [""] means "none" in ROS YAML


def settings_from(p: Mapping[str, Any]) -> PlannerSettings:
    """PlannerSettings from parameter values."""
    return PlannerSettings(
        max_graph_age_s=p["max_graph_age_s"],
        graph_wait_s=p["graph_wait_s"],
        set_concepts_timeout_s=p["set_concepts_timeout_s"],
        camera=p["camera"],
        extract_concepts=p["extract_concepts"],
        max_concepts=p["max_concepts"],
        extra_concepts=(
            _words(p["extra_categories"]),
            _words(p["extra_attributes"]),
            _words(p["extra_relations"]),
        ),
        max_objects=p["scene_max_objects"],
        max_relations=p["scene_max_relations"],
        max_instruction_chars=p["max_instruction_chars"],
        include_image=bool(p["image_topic"]),
        publish_prompts=p["publish_prompts"],
    )


def llm_config_from(p: Mapping[str, Any]) -> LLMConfig | None:
    """The LLM client configuration, or None (dry run) when no base_url is set."""
    if not p["base_url"].strip():
        return None
    return LLMConfig(
        base_url=p["base_url"].strip(),
        model=p["model"],
        timeout_s=p["timeout_s"],
        max_retries=p["max_retries"],
        backoff_s=p["backoff_s"],
        max_response_bytes=p["max_response_bytes"],
        temperature=p["temperature"],
        max_tokens=p["max_tokens"],
        json_mode=p["json_mode"],
    )


def breaker_from(p: Mapping[str, Any]) -> CircuitBreaker:
    return CircuitBreaker(p["breaker_failures"], p["breaker_reset_s"])


def load_actions(p: Mapping[str, Any]) -> ActionSet:
    """The allow-list from ``actions_file`` (its ``actions`` key, top level or in a node's
    ros__parameters), restricted to ``enabled_groups``."""
    path = resolve_share_path(p["actions_file"] or "config/planner.yaml")
    data = _actions_section(Path(path))
    groups = _words(p["enabled_groups"]) or ("*",)
    return load_action_set(data, str(path), groups, p["max_reason_chars"])


def _actions_section(path: Path) -> Any:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ActionSetError(f"{path}: cannot read the action set: {exc}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        # safe_load's constructors raise these on values like `2001-13-01` or `!!bool maybe`
        raise ActionSetError(f"{path}: invalid YAML: {type(exc).__name__}: {exc}") from None
    if isinstance(doc, dict) and "actions" in doc:
        return doc["actions"]
    for section in (doc or {}).values() if isinstance(doc, dict) else ():
        params = section.get("ros__parameters") if isinstance(section, dict) else None
        if isinstance(params, dict) and "actions" in params:
            return params["actions"]
    raise ActionSetError(f"{path}: no 'actions' mapping (top level or under ros__parameters)")
