"""Training data preparation: datasets (generated ShapesWorld or given), caption specs, crops.

Only rank 0 writes shared files (generated clips, the spec cache); every rank then builds its
share of the crop cache and loads all of it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.model_config import PreprocessConfig
from training import spec as S
from training.caption_rules import PARSER_VERSION
from training.caption_specs import RULES_MODEL, SpecCache, build_specs, load_specs, rules_converter
from training.crop_cache import VideoCrops, build_cache, load_cache
from training.data import VideoAnnotation, load_dataset
from training.synth import generate_dataset
from training.train_config import DataConfig, SplitConfig, TrainConfig


@dataclass
class TrainSet:
    """Cached crops of the usable videos and each one's caption specifications."""

    crops: list[VideoCrops]
    specs: list[list[S.TemporalSpec]]


def split_path(split: SplitConfig, name: str, data: DataConfig, out: Path) -> Path:
    """Where a split lives; a ShapesWorld split is generated there (rank 0) if missing."""
    if split.path:
        return Path(split.path)
    folder = out / "data" / f"{name}_s{split.seed}_n{split.videos}_f{data.frames}_{data.format}"
    if not (folder / "dataset.json").is_file():
        generate_dataset(folder, split.videos, split.seed, data.frames, data.fps, data.format)
    return folder


def write_rule_specs(videos: list[VideoAnnotation], out: Path) -> Path:
    """Parse every caption with the ShapesWorld rules into the spec cache ``out/specs.jsonl``
    (the same file format an LLM run of ``training.caption_specs`` writes for real data)."""
    path = out / "specs.jsonl"
    build_specs((v.caption for v in videos if v.caption), SpecCache(path), rules_converter,
                RULES_MODEL, PARSER_VERSION)
    return path


def check_keywords(specs: dict[str, list[S.TemporalSpec]], concepts: ConceptSet) -> None:
    """Every keyword the specs use must be in the concept lists (they index the scores)."""
    lists = {"categories": concepts.categories, "unary": concepts.unary,
             "binary": concepts.binary}
    missing: dict[str, set[str]] = {k: set() for k in lists}
    for spec_list in specs.values():
        for spec in spec_list:
            for kind, names in S.keywords(spec.formula).items():
                missing[kind] |= set(names) - set(lists[kind])
    bad = {k: sorted(v) for k, v in missing.items() if v}
    if bad:
        raise ValueError(f"caption specs use keywords missing from the concept lists: {bad}; "
                         "add them to the concepts YAML")


def crop_split(videos: list[VideoAnnotation], folder: Path, preprocess: PreprocessConfig,
               data: DataConfig, concepts: ConceptSet, rank: int, world: int,
               barrier) -> list[VideoCrops]:
    """Build (this rank's share) and load the crops of ``videos``."""
    cache = build_cache(videos, folder, preprocess, data.fps, data.max_frames, data.max_tracks,
                        concepts, rank, world)
    barrier()
    return load_cache(cache, len(videos))


def prepare(config: TrainConfig, out: Path, preprocess: PreprocessConfig, concepts: ConceptSet,
            rank: int, world: int, barrier) -> tuple[TrainSet, list[VideoCrops]]:
    """(training set, validation crops) for a run; see the module doc for who writes what."""
    data = config.data
    if rank == 0:
        split_path(data.train, "train", data, out)
        if data.val is not None:
            split_path(data.val, "val", data, out)
    barrier()
    videos = [v for v in load_dataset(split_path(data.train, "train", data, out))
              if v.trajectories is not None]
    spec_path = out / "specs.jsonl" if config.specs == "rules" else Path(config.specs)
    if rank == 0 and config.specs == "rules":
        write_rule_specs(videos, out)
    barrier()
    by_caption = load_specs(spec_path)
    check_keywords(by_caption, concepts)
    usable = [v for v in videos if by_caption.get(v.caption)]
    if len(usable) < len(videos) and rank == 0:
        print(f"warning: {len(videos) - len(usable)} videos have no caption spec; skipped",
              file=sys.stderr)
    if not usable:
        raise ValueError("no training video has tracks and a caption specification")
    cache = out / "cache"
    crops = crop_split(usable, cache, preprocess, data, concepts, rank, world, barrier)
    val: list[VideoCrops] = []
    if data.val is not None:
        val_videos = load_dataset(split_path(data.val, "val", data, out))
        val = crop_split(val_videos, cache, preprocess, data, concepts, rank, world, barrier)
    return TrainSet(crops, [by_caption[v.caption] for v in usable]), val
