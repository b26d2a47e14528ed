"""Real, open-vocabulary weights in one command: a verified model directory for the node.

    python -m training.fetch_weights --openclip ViT-B-32:openai --out models/clip_vit_b32
    python -m training.fetch_weights --vine --revision COMMIT --sha256 HEX --allow-pickle \\
        --out models/vine
    python -m training.fetch_weights --from-file laser_model_v1.pt --allow-pickle --out models/vine
    python -m training.fetch_weights --from-file open_clip_model.safetensors \\
        --openclip ViT-B-32:openai --out models/clip_vit_b32

``--openclip NAME[:TAG]``: the zero-shot CLIP baseline of the paper. open_clip builds the model
NAME with the pretrained TAG (downloaded through the Hugging Face hub, ``--revision`` pins the
hub commit) or a local checkpoint (TAG is a file path, or ``--from-file``); the one CLIP fills
all three towers (``--towers 1`` shares one: same scores, a third of the size, and each
object crop encoded once instead of twice).
``--vine``: the published SGClip checkpoint (default ``video-fm/vine_v0``,
``laser_model_v1.pt``, a pickled whole model: needs ``--allow-pickle``), fetched with
``huggingface_hub.hf_hub_download`` at a pinned commit and sha256. No pin is known to this
project yet, so ``--revision`` (the 40-hex commit id) and ``--sha256`` (of the file, shown on
its Hub page) are required; a file with another hash is refused, naming both hashes.
``--from-file PATH``: a file downloaded elsewhere: a VINE checkpoint (safetensors, state dict,
or a pickled model with ``--allow-pickle``) or an open_clip checkpoint (with ``--openclip
NAME[:TAG]`` for its architecture and preprocessing); ``--sha256`` checks it first.

Files are read with ``torch.load(weights_only=True)`` or safetensors; a pickled object is only
unpickled with ``--allow-pickle``, and only after its sha256 was checked when one is given. The
output holds model.safetensors, config.json (declaring the ``open`` domain), MODEL_CARD.md and
a sha256 manifest naming the source; it is verified as the node verifies it (manifest,
config, tensor names and shapes) before the command succeeds. Hugging Face credentials come
from the environment (``HF_TOKEN``, read by huggingface_hub itself). An existing ``--out`` is
replaced only when this tool made it.

Exit codes: 0 written; 1 the source is unusable (hash mismatch, unknown layout, failed
download); 2 bad arguments, a refused pickle, or an ``--out`` this tool did not make.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from sgclip_ros.core.domain import OPEN, ModelDomain
from sgclip_ros.core.model import CONFIG_FILE, WEIGHTS_FILE, SGClipModel, check_state_dict
from sgclip_ros.core.model_config import SGClipConfig
from sgclip_ros.core.model_store import (
    ModelFileError,
    sha256_file,
    verify_model_dir,
    write_manifest,
)
from sgclip_ros.tools.out_dir import OutDirError, check_replaceable, replace_out_dir
from training.import_vine import (
    CheckpointError,
    PickleRefusedError,
    convert_weights,
    load_checkpoint,
)
from training.openclip_spec import (
    FetchError,
    UsageError,
    openclip_config,
    parse_openclip,
    tag_preprocess,
)
from training.weights_card import card_text

MARKER = ".sgclip_fetch_weights"  # in every --out this tool writes (see tools/out_dir.py)
CARD_FILE = "MODEL_CARD.md"
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class HubFile:
    """A file on the Hugging Face hub; ``pickled``: known to be a pickled whole model."""

    repo: str
    filename: str
    pickled: bool = False


VINE_DEFAULT = HubFile("video-fm/vine_v0", "laser_model_v1.pt", pickled=True)
# (repo, filename) -> (commit, sha256 of the file), filled in only from a verified download.
# Empty: this project has not downloaded the published checkpoint (no internet where it is
# built), so the user pins both with --revision and --sha256. Never guess these values.
PINNED: dict[tuple[str, str], tuple[str, str]] = {}


# ---------------------------------------------------------------- sources and hashes


def check_sha256(path: str | Path, expected: str | None) -> str:
    """The file's sha256; FetchError naming both hashes when ``expected`` differs."""
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        raise FetchError(
            f"{path}: sha256 {actual} does not match the pinned sha256 {expected.lower()}; "
            "refusing the file (a changed upload, a corrupt download or a wrong pin)"
        )
    return actual


def _check_pin_format(revision: str | None, sha256: str | None) -> None:
    if revision is not None and not _HEX40.match(revision):
        raise UsageError(
            f"--revision {revision!r} is not a commit id (40 hex digits); a branch or tag such "
            "as 'main' moves, so it pins nothing. Copy the commit id from the repository's "
            "history on the Hub"
        )
    if sha256 is not None and not _HEX64.match(sha256.lower()):
        raise UsageError(f"--sha256 {sha256!r} is not a sha256 (64 hex digits)")


def vine_pin(hub: HubFile, revision: str | None, sha256: str | None) -> tuple[str, str]:
    """(commit, sha256) for ``hub``: given on the command line, else pinned here; else a
    UsageError saying where to find them."""
    known = PINNED.get((hub.repo, hub.filename))
    revision = revision or (known[0] if known else None)
    sha256 = sha256 or (known[1] if known else None)
    if not revision or not sha256:
        raise UsageError(
            f"no verified pin for {hub.repo}/{hub.filename} is known to this tool: pass "
            "--revision COMMIT (the 40-hex commit id, from the repository's history on the Hub) "
            "and --sha256 HEX (the file's SHA256, shown on its Hub page). Without internet: "
            "download it elsewhere and use --from-file PATH --sha256 HEX"
        )
    _check_pin_format(revision, sha256)
    return revision, sha256.lower()


def download_hub_file(repo: str, filename: str, revision: str) -> Path:
    """``hf_hub_download`` at ``revision`` into the Hugging Face cache; the cached path."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise FetchError("huggingface_hub is not installed (pip install huggingface_hub)") from exc
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision))
    except Exception as exc:  # network, auth, missing file: one clear line
        raise FetchError(
            f"download of {repo}/{filename}@{revision} failed: {type(exc).__name__}: {exc}. "
            "Without internet, download it elsewhere and use --from-file"
        ) from exc


def _hub_commit(path: Path) -> str:
    """The commit a file of the Hugging Face cache belongs to (``.../snapshots/<commit>/f``)."""
    parent = Path(path).parent
    return parent.name if parent.parent.name == "snapshots" and _HEX40.match(parent.name) else ""


def read_checkpoint(path: Path, allow_pickle: bool) -> tuple[dict, tuple[int, int] | None]:
    """Tensors of ``path``: safetensors or ``torch.load(weights_only=True)``; a pickled object
    only with ``allow_pickle`` (UsageError otherwise)."""
    try:
        return load_checkpoint(path, trust_pickle=False)
    except PickleRefusedError as exc:
        if not allow_pickle:
            raise UsageError(
                f"{path} is a pickled Python object: unpickling runs code from the file, so it "
                "needs --allow-pickle (only for a file you trust, ideally with --sha256)"
            ) from exc
    return load_checkpoint(path, trust_pickle=True)


def layout_of(weights: dict) -> str:
    """``vine`` (three Hugging Face CLIPs), ``openclip`` (one open_clip CLIP), ``sgclip`` (our
    own model.safetensors) or ``unknown``."""
    keys = list(weights)
    if any(".clip_cate_model." in "." + k for k in keys):
        return "vine"
    if any(k.startswith("towers.") for k in keys):
        return "sgclip"
    if "token_embedding.weight" in keys or any(k.startswith("visual.") for k in keys):
        return "openclip"
    return "unknown"


# ---------------------------------------------------------------- open_clip


def pretrained_cfg(name: str, tag: str) -> dict:
    """open_clip's record of a pretrained tag ({} when TAG is not a known tag)."""
    import open_clip

    return open_clip.get_pretrained_cfg(name, tag)


def download_openclip(tag_cfg: dict, revision: str | None) -> Path:
    """The tag's checkpoint through open_clip's own download (hub first, at ``revision``)."""
    from open_clip.pretrained import download_pretrained, download_pretrained_from_hf

    try:
        hub = tag_cfg.get("hf_hub", "")
        if hub:
            repo, filename = os.path.split(hub)
            return Path(download_pretrained_from_hf(repo, filename or None, revision=revision))
        if revision:
            raise UsageError("--revision applies to Hugging Face hub downloads; this tag has "
                             "only a URL (pin it with --sha256)")
        return Path(download_pretrained(tag_cfg))
    except UsageError:
        raise
    except Exception as exc:  # network, auth: one clear line
        raise FetchError(
            f"download failed: {type(exc).__name__}: {exc}. Without internet, download the "
            "checkpoint elsewhere and use --from-file PATH --openclip NAME:TAG"
        ) from exc


def openclip_weights(name: str, tag: str | None, path: Path, towers: int,
                     model_name: str) -> tuple[SGClipConfig, dict]:
    """(config, state dict) of ``towers`` copies of the open_clip model ``name`` loaded from
    the checkpoint ``path``; ``tag`` (a known tag or None) gives quick_gelu and preprocessing."""
    import open_clip
    from open_clip.model import CLIP

    cfg = openclip_config(name)
    tag_cfg = pretrained_cfg(name, tag) if tag else {}
    # The OpenAI weights need QuickGELU; open_clip only warns when the tag and config differ.
    quick_gelu = bool(tag_cfg.get("quick_gelu", cfg.get("quick_gelu", False)))
    try:
        model = open_clip.create_model(name, pretrained=str(path), force_quick_gelu=quick_gelu,
                                       weights_only=True, require_pretrained=True)
    except Exception as exc:  # wrong shapes, unreadable file: open_clip's own words
        raise FetchError(f"{path}: open_clip cannot load it as {name}: {exc}") from exc
    if type(model) is not CLIP:
        raise FetchError(f"open_clip built a {type(model).__name__} for {name}, not a plain CLIP")
    cfg["quick_gelu"] = quick_gelu
    config = SGClipConfig(
        name=model_name, clip=cfg, towers=towers,
        preprocess=tag_preprocess(cfg["vision_cfg"]["image_size"], tag_cfg),
        domain=ModelDomain(OPEN),
    )
    single = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    # Each tower its own copy: safetensors refuses tensors that share memory.
    state = {f"towers.{i}.{k}": (v if i == 0 else v.clone())
             for i in range(towers) for k, v in single.items()}
    with torch.device("meta"):  # shapes and names only, without a slow random init
        check_state_dict(SGClipModel(config), state, f"{path} as {name}")
    return config, state


# ---------------------------------------------------------------- writing


def write_weights(config: SGClipConfig, state: dict, out: Path) -> None:
    """model.safetensors + config.json as :func:`sgclip_ros.core.model.save_model` writes them."""
    from safetensors.torch import save_file

    meta = {"format": "sgclip", "config": json.dumps(config.to_dict())}
    path = out / WEIGHTS_FILE
    save_file(state, str(path), metadata=meta)
    os.chmod(path, 0o644)  # safetensors writes 0600; a node running as another user reads it
    (out / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")


def check_written(out: Path) -> None:
    """Verify ``out`` as the node does (manifest, config) and its tensor names and shapes
    against the config, without loading gigabytes of weights a second time."""
    from safetensors import safe_open

    verify_model_dir(out.parent, out.name, required=[WEIGHTS_FILE, CONFIG_FILE])
    config = SGClipConfig.from_dict(json.loads((out / CONFIG_FILE).read_text(encoding="utf-8")))
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        shapes = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    with torch.device("meta"):
        check_state_dict(SGClipModel(config), shapes, str(out / WEIGHTS_FILE))


def write_model_dir(config: SGClipConfig, state: dict, source: dict, command: str,
                    out: Path) -> Path:
    """Weights, config, card and manifest into ``out`` (replacing only a folder this tool
    made), then verified against the manifest and the config. ``state`` is emptied once
    written, so its memory can go before the check."""
    check_replaceable(out, MARKER)
    tmp = out.with_name(out.name + ".partial")  # a name only this tool uses
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_weights(config, state, tmp)
    state.clear()
    (tmp / CARD_FILE).write_text(card_text(config, source, command), encoding="utf-8")
    write_manifest(tmp, {"made_by": "training.fetch_weights", "model": config.name,
                         "source": source})
    replace_out_dir(tmp, out, MARKER)
    check_written(out)
    return out


# ---------------------------------------------------------------- the three sources


def from_openclip(args) -> tuple[SGClipConfig, dict, dict]:
    """--openclip NAME[:TAG] (optionally with --from-file): (config, state, source)."""
    name, tag = parse_openclip(args.openclip)
    openclip_config(name)  # an unsupported name fails before any download
    source = {"kind": "openclip", "model": name, "pretrained": tag or ""}
    tag_is_file = bool(tag) and Path(tag).is_file()
    if args.from_file or tag_is_file:
        path = Path(args.from_file or tag)
        if not path.is_file():
            raise UsageError(f"--from-file {path}: no such file")
        tag = None if tag_is_file else tag
        if tag and not pretrained_cfg(name, tag):
            raise UsageError(f"{name} has no pretrained tag {tag!r} (with --from-file, TAG only "
                             "selects the tag's preprocessing and activation)")
        if args.revision:
            raise UsageError("--revision pins a download; a local file is pinned by --sha256")
    elif tag:
        tag_cfg = pretrained_cfg(name, tag)
        if not tag_cfg:
            import open_clip

            tags = open_clip.list_pretrained_tags_by_model(name)
            raise UsageError(f"{name} has no pretrained tag {tag!r} and no file of that name; "
                             f"tags: {', '.join(tags) or 'none'}")
        path = download_openclip(tag_cfg, args.revision)
        source.update(repo=tag_cfg.get("hf_hub", "").rstrip("/"), url=tag_cfg.get("url", ""),
                      revision=args.revision or _hub_commit(path))
    else:
        raise UsageError(f"--openclip {name}: add :TAG (e.g. {name}:openai) or --from-file PATH")
    source.update(file=path.name, sha256=check_sha256(path, args.sha256))
    label = (tag or path.stem).replace("/", "-")
    config, state = openclip_weights(name, tag, path, args.towers,
                                     args.name or f"clip-{name}-{label}")
    return config, state, source


def from_vine(args) -> tuple[SGClipConfig, dict, dict]:
    """--vine: the published checkpoint from the hub at a pinned commit and sha256."""
    hub = HubFile(args.repo or VINE_DEFAULT.repo, args.filename or VINE_DEFAULT.filename,
                  pickled=not (args.repo or args.filename))
    revision, sha256 = vine_pin(hub, args.revision, args.sha256)
    if hub.pickled and not args.allow_pickle:
        # Known before the download: do not fetch a large file only to refuse it.
        raise UsageError(f"{hub.repo}/{hub.filename} is a pickled whole model: unpickling runs "
                         "code from the file, so it needs --allow-pickle (it is read only after "
                         "its sha256 matched)")
    path = download_hub_file(hub.repo, hub.filename, revision)
    source = {"kind": "vine", "repo": hub.repo, "filename": hub.filename, "revision": revision,
              "sha256": check_sha256(path, sha256)}  # before anything reads (or unpickles) it
    label = f"{hub.repo}/{hub.filename}@{revision}"
    weights, hint = _read(path, args.allow_pickle)
    if layout_of(weights) != "vine":
        raise FetchError(f"{label}: not a VINE checkpoint (no clip_cate_model.* tensors)")
    config, state = vine_weights(weights, hint, args.name, label)
    return config, state, source


def _read(path: Path, allow_pickle: bool) -> tuple[dict, tuple[int, int] | None]:
    try:
        return read_checkpoint(path, allow_pickle)
    except CheckpointError as exc:
        raise FetchError(str(exc)) from exc


def vine_weights(weights: dict, hint, name: str | None, label: str) -> tuple[SGClipConfig, dict]:
    """(config, state) from the tensors of a VINE checkpoint (three Hugging Face CLIPs)."""
    try:
        model = convert_weights(weights, label, name or "vine", hint, ModelDomain(OPEN))
    except CheckpointError as exc:
        raise FetchError(str(exc)) from exc
    return model.config, model.state_dict()


def from_file(args) -> tuple[SGClipConfig, dict, dict]:
    """--from-file PATH alone: a VINE checkpoint (an open_clip one needs --openclip)."""
    path = Path(args.from_file)
    if not path.is_file():
        raise UsageError(f"--from-file {path}: no such file")
    sha256 = check_sha256(path, args.sha256)  # before anything reads (or unpickles) it
    weights, hint = _read(path, args.allow_pickle)
    layout = layout_of(weights)
    if layout == "openclip":
        raise UsageError(f"{path} is an open_clip checkpoint: name its architecture with "
                         "--openclip NAME[:TAG] (e.g. ViT-B-32:openai)")
    if layout == "sgclip":
        raise UsageError(f"{path} is already an sgclip_ros model.safetensors: use its folder")
    if layout != "vine":
        raise FetchError(f"{path}: unknown layout; expected a VINE checkpoint "
                         "(clip_cate_model.*, clip_unary_model.*, clip_binary_model.*) or an "
                         "open_clip checkpoint (with --openclip)")
    config, state = vine_weights(weights, hint, args.name, str(path))
    return config, state, {"kind": "vine", "file": path.name, "sha256": sha256}


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.fetch_weights", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--openclip", metavar="NAME[:TAG]",
                   help="open_clip model and pretrained tag or checkpoint file "
                        "(zero-shot CLIP baseline), e.g. ViT-B-32:openai")
    p.add_argument("--vine", action="store_true",
                   help=f"the published SGClip checkpoint ({VINE_DEFAULT.repo}/"
                        f"{VINE_DEFAULT.filename}); needs --revision, --sha256, --allow-pickle")
    p.add_argument("--from-file", metavar="PATH",
                   help="a checkpoint downloaded elsewhere (VINE, or open_clip with --openclip)")
    p.add_argument("--out", required=True, type=Path, help="model directory to write")
    p.add_argument("--revision", help="hub commit id (40 hex) to download from")
    p.add_argument("--sha256", help="sha256 the downloaded or given file must have")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow unpickling a pickled checkpoint (runs code from the file)")
    p.add_argument("--repo", help=f"--vine: hub repository (default {VINE_DEFAULT.repo})")
    p.add_argument("--filename", help=f"--vine: file in it (default {VINE_DEFAULT.filename})")
    p.add_argument("--towers", type=int, choices=(1, 3), default=3,
                   help="--openclip: 3 towers (the SGClip layout, for fine-tuning) or 1 shared "
                        "tower (same scores, a third of the size, object crops encoded once)")
    p.add_argument("--name", help="model name stored in config.json")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    return p.parse_args(argv)


def _check_combination(args) -> None:
    chosen = [flag for flag, on in (("--openclip", args.openclip), ("--vine", args.vine),
                                    ("--from-file", args.from_file)) if on]
    if not chosen or (len(chosen) > 1 and set(chosen) != {"--openclip", "--from-file"}):
        raise UsageError("choose one source: --openclip NAME[:TAG], --vine or --from-file PATH "
                         "(--from-file may come with --openclip)")
    if (args.repo or args.filename) and not args.vine:
        raise UsageError("--repo/--filename choose the --vine download")
    if args.towers != 3 and not args.openclip:
        raise UsageError("--towers applies to --openclip (VINE has three trained towers)")
    if args.revision and args.from_file:
        raise UsageError("--revision pins a download; a local file is pinned by --sha256")
    _check_pin_format(args.revision, args.sha256)


def fetch(args) -> Path:
    """Run the command; returns the written directory (raises UsageError/FetchError)."""
    _check_combination(args)
    check_replaceable(args.out, MARKER)  # before any download
    if args.openclip:
        config, state, source = from_openclip(args)
    elif args.vine:
        config, state, source = from_vine(args)
    else:
        config, state, source = from_file(args)
    command = shlex.join(["python", "-m", "training.fetch_weights", *args.argv])
    return write_model_dir(config, state, source, command, Path(args.out))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        out = fetch(args)
    except (UsageError, OutDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FetchError, ModelFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} (model.safetensors, config.json, {CARD_FILE}, manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
