"""The trainer on the tiny config: the loss falls, resume continues exactly, the checkpoint
loads through load_backend, DDP on two gloo processes keeps the ranks identical, and the
trainer's probabilities are the inference encoder's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sgclip_ros.core.backend_select import load_backend
from sgclip_ros.core.model import WEIGHTS_FILE
from training import train as T
from training.data import frame_tracks, load_dataset
from training.evaluate import concept_texts, encode_video, eval_concepts, video_scores
from training.train_losses import batch_pixels, batch_probs, pooled_category

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "training" / "configs" / "tiny.yaml"


def _train(out: Path, *extra: str) -> dict:
    assert T.main(["--config", str(TINY), "--out", str(out), "--threads", "1", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    _train(out)
    return out


def test_loss_falls_and_outputs_are_written(straight):
    history = _history(straight)
    assert len(history) >= 2
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    assert set(history[-1]["val"]) >= {"category_r1", "binary_rprec"}
    assert (straight / "curves.png").stat().st_size > 0
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["finished"] and summary["mode"] == "weak"


def test_resume_continues_exactly(straight, tmp_path):
    out = tmp_path / "resumed"
    first = _train(out, "--max-steps", "3")
    assert not first["finished"] and first["position"]["global_step"] == 3
    second = _train(out, "--resume")
    assert second["finished"]
    assert second["position"]["global_step"] == json.loads(
        (straight / "summary.json").read_text())["position"]["global_step"]
    a = load_file(str(straight / "model" / WEIGHTS_FILE))
    b = load_file(str(out / "model" / WEIGHTS_FILE))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert [h["train"]["loss"] for h in _history(out)] == pytest.approx(
        [h["train"]["loss"] for h in _history(straight)], rel=1e-5)


def test_checkpoint_loads_through_load_backend(straight):
    choice = load_backend("torch", str(straight), "model", device="cpu")
    assert not choice.untrained and choice.backend.name == "torch"
    s = choice.backend.preprocess.image_size
    emb = choice.backend.encode_images(0, torch.zeros(2, 3, s, s))
    assert emb.shape[0] == 2


def test_trainer_probabilities_are_the_inference_encoders(straight):
    """The per-frame probabilities the trainer optimises equal the robot's (FrameEncoder)."""
    config = T.load_train_config(TINY)
    trainer = T.Trainer(config, straight, False, T.Dist())
    trainer.resume()
    trainer.load_data()
    trainer.model.eval()
    backend = load_backend("torch", str(straight), "model", device="cpu").backend
    concepts = eval_concepts(trainer.concepts)
    texts = concept_texts(backend, concepts)
    videos = load_dataset(next((straight / "data").glob("val_*")))
    for video, crops in zip(videos, trainer.val, strict=True):
        frames = video.frames(config.data.fps, config.data.max_frames)
        tracks = frame_tracks(video, frames.frame_indices)
        robot = video_scores(encode_video(backend, texts, frames, tracks), texts,
                             tracks.track_ids)
        with torch.no_grad():
            obj, pair = batch_pixels([crops], trainer.model.config.preprocess, "cpu")
            mine = batch_probs([crops], trainer.encoders(obj, pair), trainer.concepts)[0]
        torch.testing.assert_close(pooled_category(mine), robot.category, atol=1e-5, rtol=0)
        torch.testing.assert_close(mine.unary, robot.unary, atol=1e-5, rtol=0)
        torch.testing.assert_close(mine.binary, robot.binary, atol=1e-5, rtol=0)


def test_supervised_mode_trains(tmp_path):
    summary = _train(tmp_path, "--supervised", "--max-steps", "2")
    assert summary["mode"] == "supervised" and summary["position"]["global_step"] == 2


def test_ddp_two_gloo_processes_end_with_identical_weights(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE"))}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", "2", "-m", "training.train", "--config", str(TINY), "--out",
           str(tmp_path), "--max-steps", "2", "--threads", "1"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["position"]["global_step"] == 2
    digests = summary["rank_weight_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
