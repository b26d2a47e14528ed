"""The domain WARN where users see it: /diagnostics (converter and a live node) and the bag
runner's summary. The household lists on the ShapesWorld model warn; the shapes lists do not."""

from __future__ import annotations

from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.domain import REAL_WEIGHTS_COMMAND, check_domain, read_domain
from sgclip_ros.core.health import PerceptionStatus
from sgclip_ros.ros.diagnostics import diagnostics_msg

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "shapes_default"
HOUSEHOLD = REPO / "config" / "concepts" / "household.yaml"
SHAPES = REPO / "config" / "concepts" / "shapes.yaml"


def _node_status(domain) -> DiagnosticStatus:
    status = PerceptionStatus(node_name="sgclip_perception", backend="torch", device="cpu",
                              model_id="0123456789abcdef", concepts_id="c0ffee", domain=domain)
    return diagnostics_msg(status, 0).status[0]


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _shipped(concepts_path: Path):
    return check_domain("shapes_default", read_domain(SHIPPED), load_concepts(concepts_path))


def test_household_lists_on_the_shapes_model_warn_in_diagnostics():
    msg = _node_status(_shipped(HOUSEHOLD))
    assert msg.level == DiagnosticStatus.WARN
    assert msg.message.startswith("model shapes_default (domain shapesworld) never saw 60")
    assert "person, chair, table, sofa, bed (+55 more)" in msg.message
    values = _values(msg)
    assert values["model_name"] == "shapes_default"
    assert values["model_domain"] == "shapesworld"
    assert values["domain_unknown_words"].startswith("person, chair, table, sofa, bed, ")
    assert REAL_WEIGHTS_COMMAND in values["real_weights"]


def test_shapes_lists_are_ok_and_still_say_how_to_get_real_weights():
    msg = _node_status(_shipped(SHAPES))
    assert msg.level == DiagnosticStatus.OK, msg.message
    values = _values(msg)
    assert values["domain_unknown_words"] == "none"
    assert REAL_WEIGHTS_COMMAND in values["real_weights"]


def test_domain_keys_are_there_before_a_model_and_for_undeclared_models():
    for domain in (None, check_domain("mine", None, load_concepts(HOUSEHOLD))):
        msg = _node_status(domain)
        values = _values(msg)
        assert msg.level == DiagnosticStatus.OK, msg.message  # unknown: nothing to warn about
        assert values["model_domain"] == "unknown" and values["real_weights"] == "n/a"
        assert values["domain_unknown_words"] == "none"


def test_bag_summary_has_the_warning_line_and_a_json_key():
    from sgclip_ros.tools.bag import format_summary
    from sgclip_ros.tools.bag_model import domain_check

    check = domain_check(str(SHIPPED), load_concepts(HOUSEHOLD))
    summary = {"frames_read": 3, "frames_processed": 3, "graphs_written": 3, "output": "o",
               "storage": "mcap", "rejected": {}, "model_domain": check.to_dict()}
    assert summary["model_domain"]["domain"] == "shapesworld"
    assert summary["model_domain"]["unknown_words"][:2] == ["person", "chair"]
    lines = format_summary(summary).splitlines()
    assert lines[1].startswith("bag: WARNING: model shapes_default (domain shapesworld)")
    fine = domain_check(str(SHIPPED), load_concepts(SHAPES)).to_dict()
    assert fine["warning"] == "" and fine["closed"]
    assert "WARNING" not in format_summary(dict(summary, model_domain=fine))
    assert domain_check("", load_concepts(HOUSEHOLD)).to_dict()["domain"] == "unknown"


@pytest.mark.usefixtures("needs_install")
def test_a_live_node_warns_for_household_and_clears_after_a_change_to_shapes(
        tmp_path, ros_domain):
    from node_inproc import InProcessNode

    from sgclip_ros.core.health import Level, node_level
    from sgclip_ros.nodes.perception_setup import status_snapshot

    rig = InProcessNode(tmp_path, ros_domain, model_root=str(SHIPPED.parent),
                        model_dir=SHIPPED.name, concepts_file=str(HOUSEHOLD), backend="torch")
    try:
        node = rig.node
        assert node.predictor is not None, node.error
        level, message = node_level(status_snapshot(node))
        assert level == Level.WARN and "model shapes_default (domain shapesworld)" in message
        job = node.request_concepts(load_concepts(SHAPES), "test")
        assert rig.wait_for(job.done.is_set, 30)
        status = status_snapshot(node)
        assert node_level(status)[0] == Level.OK, node_level(status)
        assert status.domain.closed and status.domain.unknown == ()
    finally:
        rig.close()
