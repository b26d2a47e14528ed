"""Export a trained SGClip checkpoint to ONNX and AOTInductor, with parity checks and manifests.

    python -m training.export --checkpoint DIR --out DIR [--formats onnx,onnx-int8,aoti]
        [--precision fp32|fp16|bf16[,...]] [--opset 17]
        [--concepts config/concepts/household.yaml ...] [--aoti-device auto|cpu|cuda]
        [--cuda-precision fp16|bf16|fp32]

``--out`` becomes a complete model directory: the checkpoint's ``model.safetensors`` and
``config.json`` (copied unless ``--out`` is the checkpoint) with a top-level manifest, plus one
folder per artefact format, each with its own ``manifest.json``: ``onnx/`` (fp32, dynamic
batch; ``--precision fp16`` / ``bf16`` write ``onnx_fp16/`` / ``onnx_bf16/`` instead, or as
well when the list also names fp32), ``onnx_int8/`` (``--formats onnx-int8``: ONNX Runtime
dynamic int8 for CPU-only robots), ``aoti_cpu/`` and, on a GPU machine, ``aoti_cuda/``.
Reduced-precision and int8 graphs are made from the fp32 graphs of this run (or of a temporary
fp32 export when ``onnx`` at fp32 is not requested). Each folder is built under a
temporary name and only replaces the old one once every check passed; an old one is replaced
only when an earlier export made it (it holds a ``.sgclip_export`` file) or it is empty.

Exit codes: 0 exported and checked; 1 an export or parity check failed; 2 bad input (or an
artefact folder in ``--out`` that this tool did not make).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

from sgclip_ros.core.backends.artefacts import subdir_for
from sgclip_ros.core.io_spec import AOTI_MAX_BATCH, PRECISIONS
from sgclip_ros.core.model import CONFIG_FILE, WEIGHTS_FILE, SGClipModel, load_model
from sgclip_ros.core.model_store import (
    MANIFEST,
    ModelFileError,
    model_id,
    verify_model_dir,
    write_manifest,
)
from sgclip_ros.tools.out_dir import check_replaceable, replace_out_dir
from training.export_onnx import DEFAULT_OPSET, ExportError, export_onnx, onnx_subdir

FORMATS = ("onnx", "onnx-int8", "aoti")
# In every artefact folder this tool writes: only such a folder (or an empty one) is replaced.
MARKER = ".sgclip_export"
CONCEPT_DIR = Path(__file__).resolve().parent.parent / "config" / "concepts"


def default_concepts() -> list[str]:
    """The shipped concept lists (``config/concepts/*.yaml``)."""
    return [str(p) for p in sorted(CONCEPT_DIR.glob("*.yaml"))]


def prepare_model_dir(checkpoint: Path, out: Path) -> dict:
    """Verify the checkpoint, make ``out`` a model directory; returns its top-level manifest."""
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (checkpoint / name).is_file():
            raise ModelFileError(f"{checkpoint / name}: missing (expected {WEIGHTS_FILE} + "
                                 f"{CONFIG_FILE} as written by save_model)")
    extra = {}
    if (checkpoint / MANIFEST).is_file():
        source = verify_model_dir(checkpoint.parent, checkpoint.name,
                                  required=[WEIGHTS_FILE, CONFIG_FILE])
        extra = {k: v for k, v in source.items() if k != "files"}
    else:
        print(f"warning: {checkpoint} has no {MANIFEST}; its files are taken as they are",
              file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    same = out.resolve() == checkpoint.resolve()
    if not same:
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            shutil.copy2(checkpoint / name, out / name)
    if not same or not (out / MANIFEST).is_file():
        write_manifest(out, extra, recursive=False)
    return verify_model_dir(out.parent, out.name, required=[WEIGHTS_FILE, CONFIG_FILE])


def replace_folder(out: Path, subdir: str, build) -> dict:
    """Run ``build(tmp)`` in a temporary folder, then move it to ``out/subdir`` (replacing an
    earlier export there, never a folder this tool did not make)."""
    tmp, final = out / f".{subdir}.partial", out / subdir  # .partial: a name only we use
    check_replaceable(final, MARKER)
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        manifest = build(tmp)
        replace_out_dir(tmp, final, MARKER)  # the marker is not in the folder's manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def output_subdirs(args) -> list[str]:
    """The artefact folders this run writes under ``--out``."""
    subdirs = [onnx_subdir(p) for p in args.precision] if "onnx" in args.formats else []
    if "onnx-int8" in args.formats:
        subdirs.append(subdir_for("onnx-int8"))
    if "aoti" in args.formats:
        targets = aoti_targets(args.aoti_device, args.cuda_precision)
        subdirs += [subdir_for("aoti", device) for device, _ in targets]
    return subdirs


def aoti_targets(choice: str, cuda_precision: str) -> list[tuple[str, str]]:
    """(device, precision) pairs to compile AOTInductor packages for."""
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise ValueError("--aoti-device cuda needs a CUDA device; none is available")
    targets = [] if choice == "cuda" else [("cpu", "fp32")]
    if choice == "cuda" or (choice == "auto" and cuda):
        targets.append(("cuda", cuda_precision))
    return targets


def export_all(model: SGClipModel, out: Path, mid: str, args) -> dict[str, dict]:
    """Every requested format; returns {subdir: manifest}."""
    done = {}
    if "onnx" in args.formats:
        for precision in args.precision:
            done.update(export_onnx_precision(model, out, mid, args, precision, done))
    if "onnx-int8" in args.formats:
        from training.onnx_int8 import export_onnx_int8

        print("quantizing ONNX to int8 ...", flush=True)
        source = out / "onnx" if "onnx" in done else None
        sub = subdir_for("onnx-int8")
        done[sub] = replace_folder(out, sub, lambda d: export_onnx_int8(
            model, d, mid, args.opset, args.concepts, source))
    if "aoti" in args.formats:
        from training.export_aoti import export_aoti

        for device, precision in aoti_targets(args.aoti_device, args.cuda_precision):
            sub = subdir_for("aoti", device)
            print(f"compiling AOTInductor packages for {device} ({precision}) ...", flush=True)
            done[sub] = replace_folder(out, sub, lambda d, dv=device, p=precision: export_aoti(
                model, d, mid, dv, p, args.concepts, args.max_batch))
    return done


def export_onnx_precision(model: SGClipModel, out: Path, mid: str, args, precision: str,
                          done: dict) -> dict[str, dict]:
    """The ONNX folder of one precision; fp16/bf16 reuse fp32 graphs exported in this run."""
    sub = onnx_subdir(precision)
    print(f"exporting ONNX ({precision}) ...", flush=True)
    source = out / "onnx" if precision != "fp32" and "onnx" in done else None
    return {sub: replace_folder(out, sub, lambda d: export_onnx(
        model, d, mid, args.opset, args.concepts, precision, source))}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.export", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="directory with model.safetensors + config.json")
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    parser.add_argument("--formats", default="onnx,aoti",
                        help="comma list of onnx, onnx-int8 (CPU int8 graphs), aoti")
    parser.add_argument("--precision", default="fp32",
                        help="comma list of fp32, fp16, bf16: precision of the onnx format's "
                             "graphs (fp16/bf16: weights and compute; I/O stays float32)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument("--concepts", nargs="*", default=None,
                        help="concept YAML files to precompute text embeddings for "
                             "(default: config/concepts/*.yaml)")
    parser.add_argument("--aoti-device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU, plus CUDA when a GPU is present")
    parser.add_argument("--cuda-precision", choices=PRECISIONS, default="fp16",
                        help="compute precision of CUDA AOTInductor packages")
    parser.add_argument("--max-batch", type=int, default=AOTI_MAX_BATCH,
                        help="largest batch of an AOTInductor package (bigger ones are split)")
    args = parser.parse_args(argv)
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(args.formats) - set(FORMATS))
    if unknown or not args.formats:
        parser.error(f"--formats takes a comma list of {FORMATS}, got {unknown or 'nothing'}")
    args.precision = parse_precisions(parser, args.precision, args.formats)
    if args.concepts is None:
        args.concepts = default_concepts()
    if not 7 <= args.opset <= 23:
        parser.error(f"--opset must be in 7..23, got {args.opset}")
    return args


def parse_precisions(parser: argparse.ArgumentParser, text: str, formats: list[str]) -> list:
    """``--precision`` as a list, fp32 first (the others may reuse its graphs)."""
    wanted = {p.strip() for p in text.split(",") if p.strip()}
    unknown = sorted(wanted - set(PRECISIONS))
    if unknown or not wanted:
        parser.error(f"--precision takes a comma list of {PRECISIONS}, got {unknown or 'nothing'}")
    if wanted != {"fp32"} and "onnx" not in formats:
        parser.error("--precision applies to the onnx format; add onnx to --formats")
    return [p for p in PRECISIONS if p in wanted]


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        for sub in output_subdirs(args):  # before anything is written or exported
            check_replaceable(args.out / sub, MARKER)
        manifest = prepare_model_dir(args.checkpoint, args.out)
        model = load_model(args.checkpoint)
        done = export_all(model, args.out, model_id(manifest), args)
    except (ModelFileError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"export FAILED: {exc}", file=sys.stderr)
        return 1
    for sub, folder_manifest in done.items():
        print(f"wrote {args.out / sub} ({len(folder_manifest['files'])} files, "
              f"precision {folder_manifest['precision']})")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
