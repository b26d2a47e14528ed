"""Package a trained model for shipping: held-out metrics of three rows and a model card.

    python -m training.model_card --weak RUN/model --supervised SUP/model --heldout DIR \\
        --concepts config/concepts/shapes.yaml --command "python -m training.train ..." \\
        --summary RUN/summary.json --out models/shapes_default

Evaluates, on the held-out dataset and with :mod:`training.evaluate`'s protocol, the weak
(caption-only) model, the same architecture untrained (random weights, the chance row) and the
supervised upper bound. Copies the weak model's files to ``--out`` with ``metrics.json`` (the
weak row, exactly the evaluation keys), ``metrics_rows.json`` (all three rows) and
``MODEL_CARD.md``, then rewrites the sha256 manifest over all of them. An existing ``--out`` is
replaced only when an earlier run made it (it holds a ``.sgclip_model_card`` file) or it is empty.

Exit codes: 0 written; 2 bad arguments, dataset or model, or an ``--out`` this tool did not make.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from sgclip_ros.core.concepts import ConceptError, ConceptSet, load_concepts
from sgclip_ros.core.domain import ModelDomain, card_section
from sgclip_ros.core.model import CONFIG_FILE, WEIGHTS_FILE
from sgclip_ros.core.model_config import SGClipConfig
from sgclip_ros.core.model_store import MANIFEST, ModelFileError, write_manifest
from sgclip_ros.tools.out_dir import check_replaceable, replace_out_dir
from training.checkpoint import CONCEPTS_FILE
from training.data import AnnotationError, load_dataset
from training.eval_metrics import METRIC_KEYS
from training.evaluate import evaluate_videos, load_eval_backend
from training.video_io import VideoReadError

ROWS = ("untrained", "weak", "supervised")
GOALS = {"category_r1": 0.95, "unary_r1": 0.90, "binary_rprec": 0.85}
SHIPPED_FILES = (WEIGHTS_FILE, CONFIG_FILE, CONCEPTS_FILE)
# In every --out folder this tool writes: only such a folder (or an empty one) is replaced.
MARKER = ".sgclip_model_card"
DOMAIN = "shapesworld"  # the closed domain of every model this tool packages


def shapes_domain(concepts: ConceptSet) -> ModelDomain:
    """The closed ShapesWorld domain: exactly the words of the lists the model trained with."""
    vocabulary = {"categories": concepts.categories, "unary": concepts.unary,
                  "binary": concepts.binary}
    return ModelDomain(DOMAIN, vocabulary)


def declare_domain(model_dir: Path, domain: ModelDomain) -> None:
    """Write ``domain`` into ``model_dir/config.json`` (validated; the weights are untouched)."""
    path = Path(model_dir) / CONFIG_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data["domain"] = domain.to_dict()
    path.write_text(SGClipConfig.from_dict(data).to_json(), encoding="utf-8")


def evaluate_rows(weak: Path, supervised: Path, heldout: Path, concepts_path: Path,
                  max_frames: int = 12) -> dict[str, dict]:
    """Metrics of the untrained, weak and supervised rows on the held-out dataset."""
    videos = load_dataset(heldout)
    concepts = load_concepts(concepts_path)
    sources = {"untrained": (weak, True), "weak": (weak, False), "supervised": (supervised, False)}
    rows = {}
    for row in ROWS:
        folder, untrained = sources[row]
        backend = load_eval_backend(folder, untrained)
        rows[row] = evaluate_videos(backend, videos, concepts, 1.0, max_frames)
    return rows


def goal_checks(rows: dict[str, dict]) -> dict[str, dict]:
    """Per goal key: the weak value, the goal, the weak/supervised ratio and whether both hold."""
    out = {}
    for key, goal in GOALS.items():
        weak, sup = rows["weak"][key], rows["supervised"][key]
        ratio = weak / sup if sup > 0 else float("inf")
        out[key] = {"weak": weak, "goal": goal, "ratio_to_supervised": ratio,
                    "met": weak >= goal and ratio >= 0.9}
    return out


def _table(rows: dict[str, dict]) -> str:
    keys = [k for k in METRIC_KEYS if k not in ("n_videos", "n_frames")]
    lines = ["| row | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for row in ROWS:
        lines.append(f"| {row} | " + " | ".join(f"{rows[row][k]:.3f}" for k in keys) + " |")
    return "\n".join(lines)


def _seed_note(heldout: str) -> str:
    """"seed N" from the held-out ShapesWorld annotations, when they say."""
    seeds = set()
    for path in sorted(Path(heldout).glob("annotations/*.json"))[:50]:
        meta = json.loads(path.read_text(encoding="utf-8")).get("meta", {})
        seeds.add(meta.get("seed"))
    return f"seed {seeds.pop()}" if len(seeds) == 1 and None not in seeds else "a held-out set"


def card_text(rows: dict[str, dict], summary: dict, command: str, heldout: str,
              domain: ModelDomain | None = None) -> str:
    """MODEL_CARD.md: what the model is, how it was trained, on what, and how well it does."""
    cfg = summary.get("config", {})
    data = cfg.get("data", {})
    checks = goal_checks(rows)
    goal_lines = "\n".join(
        f"- `{k}`: {c['weak']:.3f} (goal >= {c['goal']}), {100 * c['ratio_to_supervised']:.1f}% "
        f"of supervised - {'met' if c['met'] else 'NOT met'}" for k, c in checks.items())
    minutes = summary.get("wall_s_this_run", 0.0) / 60.0  # the whole command, data included
    n = rows["weak"]
    train = data.get("train", {})
    val = data.get("val") or {}
    steps = summary.get("position", {}).get("global_step", "?")
    return f"""# shapes_default: SGClip for ShapesWorld, learned from captions only

An `{cfg.get('model', {}).get('config', '?')}` SGClip model (three small CLIP towers: category,
unary, binary) trained **without scene-graph labels**: each clip's caption becomes a temporal
specification and the differentiable temporal logic of `training/logic.py` turns it into the
loss. Object tracks come from the annotations with their labels removed (as the reference uses
unlabelled detector and tracker traces). It is the default model of the demo and the tests.

Concepts (`concepts.yaml`): categories circle, square, triangle, star; unary red, green, blue,
yellow; binary left of, right of, above, below, touching (sigmoid, multi-label).

{card_section(domain) if domain else ""}
## Training
- Data: ShapesWorld (`python -m training.synth`): {train.get('videos', '?')} training clips
  (seed {train.get('seed', '?')}) of {data.get('frames', '?')} frames, captions converted by the
  rule-based parser; {val.get('videos', '?')} validation clips (seed {val.get('seed', '?')}) for
  the per-epoch curves.
- Command, on 2 CPU cores: {minutes:.1f} minutes wall time for the whole command (data
  generation, crop cache and {steps} steps of `{summary.get('mode', '?')}` training):

      {command}

- The full config is `training/configs/shapes.yaml`; `make shapes-default` reruns everything
  (data, weak and supervised training, held-out evaluation, this card).

## Held-out evaluation
{n['n_videos']} clips ({n['n_frames']} frames) of `{heldout}` ({_seed_note(heldout)}, never
trained on); reference protocol (ground-truth tracks given, hit = true label in the top K):

{_table(rows)}

- untrained: the same architecture with random weights (chance level);
- weak: this model (captions only);
- supervised: the same config trained with `--supervised` on the true labels (upper bound).

Goals of the training issue:
{goal_lines}

## Limits
- ShapesWorld only: solid shapes on plain backgrounds at 32x32 crops. It is not a
  general-purpose model; fine-tune from imported reference weights for real scenes
  (docs/training.md).
- Relations are image-plane relations of boxes; "touching" means a gap of at most 2 px.
"""


def package(weak: Path, rows: dict[str, dict], card: str, out: Path) -> Path:
    """Copy the weak model's files and write metrics, card and manifest into ``out`` (replacing
    an earlier card's folder, never one this tool did not make)."""
    check_replaceable(out, MARKER)
    tmp = out.with_name(out.name + ".partial")  # a name only this tool uses
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in SHIPPED_FILES:
        shutil.copy2(weak / name, tmp / name)
    declare_domain(tmp, shapes_domain(load_concepts(tmp / CONCEPTS_FILE)))
    weak_row = {k: rows["weak"][k] for k in METRIC_KEYS}
    (tmp / "metrics.json").write_text(json.dumps(weak_row, indent=2) + "\n", encoding="utf-8")
    (tmp / "metrics_rows.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    source = json.loads((weak / MANIFEST).read_text(encoding="utf-8"))
    write_manifest(tmp, {k: v for k, v in source.items() if k != "files"})
    return replace_out_dir(tmp, out, MARKER)  # the marker is not in the manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weak", required=True, help="the weak run's model directory")
    parser.add_argument("--supervised", required=True, help="the supervised run's model dir")
    parser.add_argument("--heldout", required=True, help="held-out VidOR-style dataset")
    parser.add_argument("--concepts", required=True, help="concept YAML for evaluation")
    parser.add_argument("--summary", required=True, help="the weak run's summary.json")
    parser.add_argument("--command", required=True, help="the weak training command line")
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        check_replaceable(args.out, MARKER)  # before minutes of evaluation
        summary = json.loads(Path(args.summary).read_text(encoding="utf-8"))
        domain = shapes_domain(load_concepts(Path(args.weak) / CONCEPTS_FILE))
        rows = evaluate_rows(Path(args.weak), Path(args.supervised), Path(args.heldout),
                             Path(args.concepts))
    except (AnnotationError, ConceptError, ModelFileError, VideoReadError, ValueError,
            OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    card = card_text(rows, summary, args.command, args.heldout, domain)
    package(Path(args.weak), rows, card, Path(args.out))
    print(json.dumps({"rows": rows, "goals": goal_checks(rows)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
