"""Packaging a trained model: goal checks, the card's contents and a verified model folder."""

from __future__ import annotations

import json

import pytest

from sgclip_ros.core.backend_select import load_backend
from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.model import build_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.model_store import ModelFileError
from training.checkpoint import export_model_dir
from training.eval_metrics import METRIC_KEYS
from training.model_card import MARKER, card_text, goal_checks, main, package


def row(**values) -> dict:
    base = {k: 0.5 for k in METRIC_KEYS}
    base.update(n_videos=3, n_frames=36)
    base.update(values)
    return base


ROWS = {
    "untrained": row(category_r1=0.25),
    "weak": row(category_r1=0.97, unary_r1=0.95, binary_rprec=0.86),
    "supervised": row(category_r1=1.0, unary_r1=1.0, binary_rprec=0.99),
}


def test_goal_checks_need_the_goal_and_ninety_percent_of_supervised():
    checks = goal_checks(ROWS)
    assert checks["category_r1"]["met"] and checks["unary_r1"]["met"]
    assert checks["binary_rprec"]["ratio_to_supervised"] < 0.9  # 0.86 / 0.99
    assert not checks["binary_rprec"]["met"]


def test_card_states_command_rows_and_unmet_goals():
    summary = {"mode": "weak", "wall_s_this_run": 600.0, "position": {"global_step": 42},
               "config": {"model": {"config": "sgclip-shapes"},
                          "data": {"train": {"videos": 10, "seed": 1}, "frames": 12}}}
    text = card_text(ROWS, summary, "python -m training.train --config X --out Y", "runs/h")
    assert "python -m training.train --config X --out Y" in text
    assert "10.0 minutes" in text and "42 steps" in text
    assert "| untrained | 0.250" in text and "| weak | 0.970" in text
    assert "`binary_rprec`: 0.860 (goal >= 0.85), 86.9% of supervised - NOT met" in text


def test_package_writes_a_verified_model_folder(tmp_path):
    weak = export_model_dir(build_model(load_model_config("sgclip-tiny"), seed=1),
                            load_concepts("config/concepts/shapes.yaml"), tmp_path / "run")
    out = package(weak, ROWS, "# card\n", tmp_path / "models" / "shipped")
    assert json.loads((out / "metrics.json").read_text()) == {k: ROWS["weak"][k]
                                                             for k in METRIC_KEYS}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"MODEL_CARD.md", "metrics.json", "metrics_rows.json", "model.safetensors",
            "config.json", "concepts.yaml"} <= set(manifest["files"])
    choice = load_backend("torch", str(out.parent), out.name, "cpu")
    assert not choice.untrained
    (out / "metrics.json").write_text("{}")  # tampering is caught by the manifest
    with pytest.raises(ModelFileError, match="metrics.json"):
        load_backend("torch", str(out.parent), out.name, "cpu")


def test_package_replaces_only_a_folder_it_made(tmp_path, capsys):
    weak = export_model_dir(build_model(load_model_config("sgclip-tiny"), seed=1),
                            load_concepts("config/concepts/shapes.yaml"), tmp_path / "run")
    mine = tmp_path / "models" / "sgclip"  # a user's model, given as --out by mistake
    mine.mkdir(parents=True)
    (mine / "model.safetensors").write_bytes(b"my weights")
    with pytest.raises(ValueError, match=f"{mine}: not empty and not made by this tool"):
        package(weak, ROWS, "# card\n", mine)
    assert [p.name for p in mine.iterdir()] == ["model.safetensors"]
    assert (mine / "model.safetensors").read_bytes() == b"my weights"
    assert not (tmp_path / "models" / "sgclip.partial").exists()
    # The command line refuses it before the (long) evaluation: no other input is even read.
    argv = ["--weak", "w", "--supervised", "s", "--heldout", "h", "--concepts", "c",
            "--summary", "none.json", "--command", "x", "--out", str(mine)]
    assert main(argv) == 2 and str(mine) in capsys.readouterr().err
    out = package(weak, ROWS, "# card\n", tmp_path / "models" / "shipped")
    (out / "stale.txt").write_text("from the first run")
    package(weak, ROWS, "# card 2\n", out)
    assert (out / MARKER).is_file() and not (out / "stale.txt").exists()
    assert (out / "MODEL_CARD.md").read_text() == "# card 2\n"
    load_backend("torch", str(out.parent), out.name, "cpu")  # the manifest still verifies


def test_the_shipped_model_can_be_replaced_by_make_shapes_default():
    from sgclip_ros.tools.out_dir import check_replaceable

    check_replaceable("models/shapes_default", MARKER)
