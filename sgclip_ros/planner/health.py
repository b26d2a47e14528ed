"""What the planner reports in /diagnostics, and its OK/WARN/ERROR rule (ROS-free).

ERROR: configuration failed, or the circuit breaker is open (the endpoint keeps failing).
WARN: dry run (no endpoint: never acts), or the last plan published no action.
OK: otherwise. Values never include the API key: only the variable's name and whether it is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sgclip_ros.core.health import Level
from sgclip_ros.planner.breaker import CLOSED, OPEN
from sgclip_ros.planner.core import CANCELED, DRY_RUN, OK


@dataclass
class PlannerStatus:
    node_name: str
    mode: str = "unconfigured"  # llm, dry_run or unconfigured
    endpoint: str = ""  # safe_url(base_url): no credentials
    model: str = ""
    api_key_env: str = ""
    api_key_set: bool = False
    breaker_state: str = CLOSED
    consecutive_failures: int = 0
    llm_stats: dict = field(default_factory=dict)
    llm_last_error: str = ""
    stats: dict = field(default_factory=dict)  # PlannerStats.snapshot()
    graphs_received: int = 0
    last_graph_age_s: float | None = None
    busy: bool = False
    error: str = ""


def planner_level(status: PlannerStatus) -> tuple[Level, str]:
    """The diagnostic level and message for ``status``."""
    if status.error:
        return Level.ERROR, status.error
    if status.breaker_state != CLOSED and status.consecutive_failures > 0:
        state = "open" if status.breaker_state == OPEN else "half-open (probing)"
        return Level.ERROR, f"LLM circuit breaker {state}: {status.llm_last_error or 'failing'}"
    if status.mode == DRY_RUN:
        return (
            Level.WARN,
            "dry run: no LLM endpoint (base_url empty); prompts on ~/prompt, no actions",
        )
    last = status.stats.get("last")
    if last is not None and last.status not in (OK, DRY_RUN, CANCELED):
        return Level.WARN, f"last plan published no action: {last.status}: {last.message}"[:300]
    if last is not None and last.status == OK:
        return Level.OK, f"last action: {last.message}"[:300]
    return Level.OK, "ready" if status.mode != "unconfigured" else "not configured"


def planner_values(status: PlannerStatus) -> dict[str, str]:
    """Stable key -> text pairs for the DiagnosticStatus."""
    stats, last = status.stats, status.stats.get("last")
    age = status.last_graph_age_s
    values = {
        "mode": status.mode,
        "endpoint": status.endpoint or "none",
        "model": status.model or "none",
        "api_key_env": status.api_key_env or "none",
        "api_key_set": str(status.api_key_set).lower(),
        "breaker_state": status.breaker_state,
        "consecutive_failures": str(status.consecutive_failures),
        "llm_calls": str(status.llm_stats.get("calls", 0)),
        "llm_failures": str(status.llm_stats.get("failures", 0)),
        "llm_attempts": str(status.llm_stats.get("attempts", 0)),
        "llm_last_error": status.llm_last_error or "none",
        "plans": str(stats.get("plans", 0)),
        "actions_published": str(stats.get("published", 0)),
        "last_status": last.status if last else "none",
        "last_stage": last.stage if last else "none",
        "last_message": (last.message if last else "none")[:300],
        "last_duration_s": f"{stats.get('last_duration_s', 0.0):.2f}",
        "graphs_received": str(status.graphs_received),
        "last_graph_age_s": "n/a" if age is None else f"{age:.2f}",
        "busy": str(status.busy).lower(),
        "error": status.error or "none",
    }
    for code, count in sorted(stats.get("by_status", {}).items()):
        values[f"status.{code}"] = str(count)
    return values
