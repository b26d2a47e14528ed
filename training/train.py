"""Train SGClip from video captions (weak, the default) or from true labels (``--supervised``).

    python -m training.train --config training/configs/shapes.yaml --out runs/shapes
        [--resume] [--supervised] [--max-minutes M] [--device cpu|cuda] [--threads N]
    torchrun --nproc_per_node 4 -m training.train --config ... --out ...   # DDP

Weak mode sees each clip's object tracks with their labels removed and learns only from the
caption's temporal specifications (:mod:`training.train_losses`). Writes under ``--out``:
``model/`` (a model directory :func:`~sgclip_ros.core.backend_select.load_backend` loads),
``resume/`` (state to continue with ``--resume``), ``metrics.jsonl`` (one line per epoch),
``curves.png`` (loss and validation recall per epoch) and ``summary.json``; generated
datasets and the crop cache go to ``data/`` and ``cache/``. Under DDP only rank 0 logs and
writes checkpoints; gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.model import build_model, load_model
from sgclip_ros.core.model_config import load_model_config
from training import checkpoint as ckpt
from training.eval_metrics import MetricAccumulator, VideoScores
from training.logic import make_semiring
from training.relation_rules import augment, converse_map, exclusive_map
from training.train_config import TrainConfig, load_train_config
from training.train_data import TrainSet, prepare
from training.train_losses import (
    Encoders,
    RelationRules,
    batch_pixels,
    batch_probs,
    clamp_logit_scale,
    negative_keywords,
    pooled_category,
    supervised_loss,
    text_uniformity,
    weak_loss,
)
from training.train_plot import plot_curves

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Dist:
    """This process's place in the job (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_dist(device: str) -> Dist:
    """Join the torchrun job when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device(device)
    if world <= 1:
        return Dist(0, 1, dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), world, dev)


def resolve(path: str) -> str:
    """A config path relative to the working directory, else to the repository."""
    return path if Path(path).exists() or Path(path).is_absolute() else str(REPO / path)


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio``."""
    o = config.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    """One training run (one process of it under DDP)."""

    def __init__(self, config: TrainConfig, out: Path, supervised: bool, env: Dist) -> None:
        self.config, self.out, self.supervised, self.env = config, out, supervised, env
        self.concepts = load_concepts(resolve(config.concepts))
        model_cfg = load_model_config(resolve(config.model.config)
                                      if config.model.config.endswith(".json")
                                      else config.model.config)
        if config.model.init:
            self.model = load_model(resolve(config.model.init))
        else:
            self.model = build_model(model_cfg, seed=config.model.seed)
        self.model.to(env.device).train()
        self.encoders = Encoders(self.model, self.concepts)
        self.forward = self.encoders
        if env.world > 1:
            self.forward = DistributedDataParallel(self.encoders)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.optim.lr,
                                          weight_decay=config.optim.weight_decay)
        self.semiring = make_semiring(config.loss.semiring, config.loss.temperature)
        self.position = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "elapsed_s": 0.0,
                         "history": []}

    # ---- data ---------------------------------------------------------------------------
    def load_data(self) -> None:
        self.train, self.val = prepare(self.config, self.out, self.model.config.preprocess,
                                       self.concepts, self.env.rank, self.env.world,
                                       self.env.barrier)
        loss = self.config.loss
        self.neg_kw = [negative_keywords(s, self.concepts, loss.converse)
                       for s in self.train.specs]
        conv, excl = converse_map(loss.converse), exclusive_map(loss.exclusive)
        self.relation_rules = RelationRules.from_names(list(self.concepts.binary), conv, excl)
        if loss.augment_specs:
            self.train.specs = [[augment(s, conv, excl) for s in specs]
                                for specs in self.train.specs]
        batch, world = self.config.optim.batch_videos, self.env.world
        self.steps_per_epoch = math.ceil(math.ceil(len(self.train.crops) / world) / batch)
        self.total_steps = self.steps_per_epoch * self.config.optim.epochs

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        sampler = DistributedSampler(range(len(self.train.crops)), self.env.world,
                                     self.env.rank, shuffle=True, seed=self.config.seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
        b = self.config.optim.batch_videos
        return [order[i:i + b] for i in range(0, len(order), b)]

    def negatives(self, index: int, rng: np.random.Generator) -> list:
        """Specifications of other videos (with another caption), to be judged false."""
        data: TrainSet = self.train
        caption, out = data.crops[index].caption, []
        for _ in range(self.config.loss.negative_specs if self.config.loss.negative_spec_weight
                       else 0):
            for _attempt in range(8):
                j = int(rng.integers(len(data.crops)))
                if data.crops[j].caption != caption:
                    out.append(data.specs[j][int(rng.integers(len(data.specs[j])))])
                    break
        return out

    # ---- one step -----------------------------------------------------------------------
    def step(self, batch: list[int], epoch: int) -> dict[str, float]:
        cfg, pos = self.config, self.position
        rng = np.random.default_rng([cfg.seed, epoch, pos["step_in_epoch"], self.env.rank])
        videos = [self.train.crops[i] for i in batch]
        obj, pair = batch_pixels(videos, self.model.config.preprocess, self.env.device)
        enc = self.forward(obj, pair)
        probs = batch_probs(videos, enc, self.concepts)
        losses, logs = [], {}
        for i, p in zip(batch, probs, strict=True):
            if self.supervised:
                labels = {k: v.to(self.env.device) for k, v in self.train.crops[i].labels.items()}
                loss, parts = supervised_loss(p, labels)
            else:
                loss, parts = weak_loss(p, self.train.specs[i], self.negatives(i, rng),
                                        self.neg_kw[i], cfg.loss, self.semiring,
                                        self.relation_rules)
            losses.append(loss)
            for k, v in parts.items():
                logs[k] = logs.get(k, 0.0) + v / len(batch)
        total = torch.stack(losses).mean()
        if cfg.loss.text_uniformity_weight:
            uniformity = text_uniformity(enc["text"])
            total = total + cfg.loss.text_uniformity_weight * uniformity
            logs["text_uniformity"] = float(uniformity.detach())
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(pos["global_step"], self.total_steps, cfg)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.optimizer.step()
        clamp_logit_scale(self.model, cfg.optim.max_logit_scale)
        pos["step_in_epoch"] += 1
        pos["global_step"] += 1
        logs["loss"] = float(total)
        return logs

    # ---- validation ---------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """Metrics on the validation crops (the inference scoring, on the cached crops)."""
        if not self.val:
            return {}
        self.model.eval()
        acc = MetricAccumulator()
        b = self.config.optim.batch_videos
        for start in range(0, len(self.val), b):
            videos = self.val[start:start + b]
            obj, pair = batch_pixels(videos, self.model.config.preprocess, self.env.device)
            for video, p in zip(videos, batch_probs(videos, self.encoders(obj, pair),
                                                    self.concepts), strict=True):
                acc.add(VideoScores(pooled_category(p).cpu(), p.unary.cpu(), p.binary.cpu(),
                                    p.present.cpu()), video.labels)
        self.model.train()
        return acc.result()

    # ---- checkpoints --------------------------------------------------------------------
    def save(self) -> None:
        if self.env.main:
            ckpt.save_resume(self.out / "resume", self.model, self.optimizer, self.position)

    def resume(self) -> bool:
        folder = self.out / "resume"
        if not ckpt.has_resume(folder):
            return False
        self.position = ckpt.load_resume(folder, self.model, self.optimizer)
        self.model.to(self.env.device)
        return True

    def export(self, mode: str) -> Path:
        extra = {"trained_by": "training.train", "mode": mode,
                 "global_step": self.position["global_step"]}
        return ckpt.export_model_dir(self.model, self.concepts, self.out / "model", extra)


def _reduce_flag(flag: bool, env: Dist) -> bool:
    if env.world <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _reduce_logs(logs: dict[str, float], env: Dist) -> dict[str, float]:
    if env.world <= 1:
        return logs
    keys = sorted(logs)
    t = torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return {k: float(v) / env.world for k, v in zip(keys, t.tolist(), strict=True)}


def run_epochs(trainer: Trainer, deadline: float | None, started: float,
               max_steps: int | None = None) -> bool:
    """Train until the configured epochs are done (True), or stop (False) when the deadline
    passes or this run has made ``max_steps`` steps; a stop saves the resume state."""
    env, pos, cfg = trainer.env, trainer.position, trainer.config
    base_elapsed, steps_done = pos["elapsed_s"], 0
    while pos["epoch"] < cfg.optim.epochs:
        batches = trainer.epoch_batches(pos["epoch"])
        sums: dict[str, float] = pos.setdefault("epoch_sums", {})  # kept across resumes
        bar = tqdm(total=len(batches), initial=pos["step_in_epoch"], disable=not env.main,
                   desc=f"epoch {pos['epoch'] + 1}/{cfg.optim.epochs}", file=sys.stderr)
        while pos["step_in_epoch"] < len(batches):
            logs = trainer.step(batches[pos["step_in_epoch"]], pos["epoch"])
            steps_done += 1
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            if pos["step_in_epoch"] % cfg.log_every == 0:
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
            pos["elapsed_s"] = base_elapsed + time.monotonic() - started
            late = _reduce_flag(deadline is not None and time.monotonic() > deadline, env)
            late = late or (max_steps is not None and steps_done >= max_steps)
            due = cfg.checkpoint_every and pos["global_step"] % cfg.checkpoint_every == 0
            if late or due:
                trainer.save()
            if late:
                bar.close()
                return False
        bar.close()
        steps = max(1, len(batches))
        record = {"epoch": pos["epoch"] + 1, "global_step": pos["global_step"],
                  "lr": trainer.optimizer.param_groups[0]["lr"],
                  "train": _reduce_logs({k: v / steps for k, v in sums.items()}, env)}
        if env.main:
            record["val"] = trainer.validate()
        env.barrier()
        pos["epoch"] += 1
        pos["step_in_epoch"] = 0
        pos["epoch_sums"] = {}
        pos["elapsed_s"] = base_elapsed + time.monotonic() - started
        record["elapsed_s"] = round(pos["elapsed_s"], 1)
        pos["history"].append(record)
        trainer.save()
        if env.main:
            with (trainer.out / "metrics.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            plot_curves(pos["history"], trainer.out / "curves.png")
            print(json.dumps(record), file=sys.stderr)
    return True


def rank_digests(model, env: Dist) -> list[str]:
    """sha256 of every rank's weights (gathered): DDP ranks must end identical."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    if env.world <= 1:
        return [digest.hexdigest()]
    gathered: list = [None] * env.world
    dist.all_gather_object(gathered, digest.hexdigest())
    return gathered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="training YAML")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/resume")
    parser.add_argument("--supervised", action="store_true", help="train on the true labels")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop (and checkpoint) after this much wall time")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: auto)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop (and checkpoint) after this many steps of this run")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + 60 * args.max_minutes if args.max_minutes else None
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    config = load_train_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = setup_dist(args.device)
    trainer = Trainer(config, out, args.supervised, env)
    if args.resume and trainer.resume() and env.main:
        print(f"resumed at epoch {trainer.position['epoch']} step "
              f"{trainer.position['step_in_epoch']}", file=sys.stderr)
    elif env.main:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    trainer.load_data()
    finished = run_epochs(trainer, deadline, started, args.max_steps)
    digests = rank_digests(trainer.model, env)
    mode = "supervised" if args.supervised else "weak"
    if env.main:
        model_dir = trainer.export(mode)
        summary = {"mode": mode, "finished": finished, "config": config.to_dict(),
                   "position": {k: v for k, v in trainer.position.items() if k != "history"},
                   "wall_s_this_run": round(time.monotonic() - started, 1),
                   "train_videos": len(trainer.train.crops), "model_dir": str(model_dir),
                   "world_size": env.world, "rank_weight_sha256": digests}
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        state = "finished" if finished else "stopped at the time or step limit (--resume goes on)"
        print(f"{state}; model: {model_dir}", file=sys.stderr)
    env.barrier()
    if env.world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
