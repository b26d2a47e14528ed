"""Build TensorRT engines from an exported ``onnx/`` folder, ON THE TARGET MACHINE (the robot).

    python -m training.build_engine --onnx MODEL_DIR/onnx [--out MODEL_DIR/tensorrt] [--fp16]
        [--bf16] [--max-batch 64] [--opt-batch 8] [--hardware-compatible]
        [--version-compatible] [--workspace-gb 4] [--timing-cache PATH] [--no-verify]

TensorRT 10 Python API: ``trt.Builder``, ``create_network(0)`` (explicit batch is the only mode),
``trt.OnnxParser`` (every parser error printed), one optimisation profile per encoder over its
dynamic batch (min 1, opt, max), a timing cache loaded before and saved after each build,
optional hardware (Ampere+) and version compatibility, ``build_serialized_network`` checked for
None. Writes one ``.plan`` per encoder, ``engine.json`` (TensorRT version, GPU name and compute
capability, precision, compatibility flags, profiles, sha256 of every plan) and a manifest;
then loads the engines back and checks them against the probe embeddings recorded at export.

``--out`` is replaced only when an earlier build_engine run made it (it holds a
``.sgclip_build_engine`` file) or it is empty; any other existing folder is refused, untouched.

Exit codes: 0 built and verified; 1 a build or the verification failed; 2 bad input or --out;
3 TensorRT is not installed (the message says how to install it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from sgclip_ros.core.backends.artefacts import (
    ENGINE_METADATA,
    FORMAT_VERSION,
    FORMATS,
    PROBE_FILE,
    TEXT_FILE,
    Artefacts,
    BackendUnavailable,
)
from sgclip_ros.core.backends.tensorrt_meta import (
    ENGINE_FORMAT,
    TensorRTUnavailable,
    import_tensorrt,
)
from sgclip_ros.core.io_spec import EncoderSpec, encoder_specs
from sgclip_ros.core.model_config import SGClipConfig
from sgclip_ros.core.model_store import (
    ModelFileError,
    sha256_file,
    verify_model_dir,
    write_manifest,
)
from sgclip_ros.tools.out_dir import check_replaceable, replace_out_dir

# In every --out folder this tool writes: only such a folder (or an empty one) is replaced.
MARKER = ".sgclip_build_engine"
COPIED = ("model_id", "model_name", "config", "io_spec", "logit_scales", "text_embeddings",
          "probe")


class BuildError(RuntimeError):
    """An engine build step failed; the message names the encoder and the step."""


def read_onnx_folder(onnx_dir: Path) -> tuple[dict, SGClipConfig]:
    """Verify the exported folder (sha256) and read its manifest and config."""
    onnx_dir = onnx_dir.resolve()
    manifest = verify_model_dir(onnx_dir.parent, onnx_dir.name)
    if manifest.get("format") != FORMATS["onnx"]:
        raise ModelFileError(f"{onnx_dir}: not an ONNX export folder (format "
                             f"{manifest.get('format')!r}); run python -m training.export")
    config = SGClipConfig.from_dict(manifest["config"])
    for spec in encoder_specs(config):
        if spec.filename("onnx") not in manifest["files"]:
            raise ModelFileError(f"{onnx_dir}: the manifest does not list {spec.filename('onnx')}")
    return manifest, config


def gpu_info() -> dict:
    """Name and compute capability of CUDA device 0 (the build target)."""
    import torch

    if not torch.cuda.is_available():
        raise BuildError("no CUDA device: TensorRT engines are built on the GPU that runs them")
    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu_name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}",
            "cuda_version": torch.version.cuda}


def default_cache_path(trt, gpu: dict) -> Path:
    name = "".join(c if c.isalnum() else "-" for c in gpu["gpu_name"])
    return Path.home() / ".cache" / "sgclip_ros" / f"trt-{trt.__version__}-{name}.timing-cache"


def profile_shapes(spec: EncoderSpec, opt: int, max_batch: int) -> dict:
    """min/opt/max input shapes of ``spec``'s dynamic batch."""
    return {"min": list(spec.input.concrete(1)), "opt": list(spec.input.concrete(opt)),
            "max": list(spec.input.concrete(max_batch))}


def builder_config(trt, builder, args, cache_bytes: bytes):
    """Builder config: workspace, precision, compatibility flags, timing cache."""
    config = builder.create_builder_config()
    if config is None:
        raise BuildError("TensorRT could not create a builder config")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(args.workspace_gb * (1 << 30)))
    if args.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if args.bf16:
        config.set_flag(trt.BuilderFlag.BF16)
    if args.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if args.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    cache = config.create_timing_cache(cache_bytes)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise BuildError("TensorRT rejected the timing cache (delete it or pass --timing-cache)")
    return config


def parse_onnx(trt, builder, logger, path: Path):
    """Network definition from ``path``; every parser error is printed, then BuildError."""
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        for error in errors:
            print(f"  ONNX parser error ({path.name}): {error}", file=sys.stderr)
        raise BuildError(f"{path}: the ONNX parser reported {len(errors)} error(s)")
    return network, parser


def build_plan(trt, logger, path: Path, spec: EncoderSpec, args, cache_path: Path) -> bytes:
    """One serialised engine for one encoder; the timing cache is loaded and saved."""
    builder = trt.Builder(logger)
    if builder is None:
        raise BuildError("TensorRT could not create a builder")
    network, _parser = parse_onnx(trt, builder, logger, path)
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    config = builder_config(trt, builder, args, cache_bytes)
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(spec, args.opt_batch, args.max_batch)
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name != spec.input.name:
            raise BuildError(f"{path}: unexpected network input {name!r}")
        profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    if config.add_optimization_profile(profile) < 0:
        raise BuildError(f"{path}: TensorRT rejected the optimisation profile {shapes}")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BuildError(f"{path}: build_serialized_network failed (see the TensorRT log)")
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(plan))


def precision_of(args) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def engine_metadata(trt, gpu: dict, args, folder: Path, specs, onnx_manifest: dict) -> dict:
    """``engine.json``: what the runtime checks before deserialising."""
    plans = {}
    for spec in specs:
        path = folder / spec.filename("plan")
        plans[spec.name] = {"file": path.name, "sha256": sha256_file(path),
                            "bytes": path.stat().st_size}
    return {
        "format": ENGINE_FORMAT,
        "tensorrt_version": trt.__version__,
        **gpu,
        "precision": precision_of(args),
        "hardware_compatibility": "ampere_plus" if args.hardware_compatible else "none",
        "version_compatible": bool(args.version_compatible),
        "max_batch": args.max_batch,
        "profiles": {s.name: {s.input.name: profile_shapes(s, args.opt_batch, args.max_batch)}
                     for s in specs},
        "plans": plans,
        "workspace_gb": args.workspace_gb,
        "onnx_opset": onnx_manifest.get("opset"),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def build_folder(trt, args, onnx_manifest: dict, config: SGClipConfig, folder: Path) -> dict:
    """Build every encoder into ``folder``, with engine.json, texts, probe and manifest."""
    gpu = gpu_info()
    logger = trt.Logger(trt.Logger.WARNING)
    cache_path = args.timing_cache or default_cache_path(trt, gpu)
    specs = encoder_specs(config)
    folder.mkdir(parents=True)
    for spec in specs:
        start = time.perf_counter()
        plan = build_plan(trt, logger, args.onnx / spec.filename("onnx"), spec, args, cache_path)
        (folder / spec.filename("plan")).write_bytes(plan)
        print(f"  built {spec.name}.plan ({len(plan) / 1e6:.1f} MB, "
              f"{time.perf_counter() - start:.0f} s)", flush=True)
    metadata = engine_metadata(trt, gpu, args, folder, specs, onnx_manifest)
    (folder / ENGINE_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    for name in (TEXT_FILE, PROBE_FILE):
        if name in onnx_manifest["files"]:
            shutil.copy2(args.onnx / name, folder / name)
    manifest = {k: onnx_manifest[k] for k in COPIED if k in onnx_manifest}
    manifest.update(format=FORMATS["tensorrt"], format_version=FORMAT_VERSION,
                    precision=metadata["precision"], max_batch=args.max_batch,
                    versions={"tensorrt": trt.__version__, "cuda": gpu["cuda_version"]},
                    engine=ENGINE_METADATA, created_by="training.build_engine")
    write_manifest(folder, manifest)
    return verify_model_dir(folder.parent, folder.name)


def verify_engines(folder: Path, manifest: dict, config: SGClipConfig) -> None:
    """Load the new engines like the runtime does and compare them with the export probe."""
    from sgclip_ros.core.backends.tensorrt_backend import TensorRTBackend

    artefacts = Artefacts("tensorrt", folder, manifest, config, manifest["model_id"])
    for name, result in TensorRTBackend(artefacts, "cuda:0").self_check().items():
        print(f"  verify {name}: TensorRT vs torch (export probe) {result.describe()}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.build_engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True, type=Path, help="exported onnx/ folder")
    parser.add_argument("--out", type=Path, help="engine folder (default: <model_dir>/tensorrt)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="allow fp16 kernels")
    precision.add_argument("--bf16", action="store_true", help="allow bf16 kernels")
    parser.add_argument("--max-batch", type=int, default=64, help="profile max batch")
    parser.add_argument("--opt-batch", type=int, default=8, help="profile optimum batch")
    parser.add_argument("--hardware-compatible", action="store_true",
                        help="run on any Ampere-or-newer GPU (slower; not on Jetson)")
    parser.add_argument("--version-compatible", action="store_true",
                        help="run on this or a later TensorRT (embeds the lean runtime)")
    parser.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file to load and save")
    parser.add_argument("--no-verify", action="store_true", help="skip the probe check")
    args = parser.parse_args(argv)
    if not 1 <= args.opt_batch <= args.max_batch:
        parser.error(f"need 1 <= --opt-batch <= --max-batch, got {args.opt_batch}, "
                     f"{args.max_batch}")
    if args.workspace_gb <= 0:
        parser.error("--workspace-gb must be positive")
    args.out = args.out or args.onnx.resolve().parent / "tensorrt"
    return args


def run(args) -> int:
    check_replaceable(args.out, MARKER)  # first: refuse before minutes of building
    trt = import_tensorrt()
    onnx_manifest, config = read_onnx_folder(args.onnx)
    tmp = args.out.parent / f".{args.out.name}.partial"  # a name only this tool uses
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        manifest = build_folder(trt, args, onnx_manifest, config, tmp)
        if not args.no_verify:
            verify_engines(tmp, manifest, config)
        replace_out_dir(tmp, args.out, MARKER)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {args.out} ({precision_of(args)}, TensorRT {trt.__version__})")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except TensorRTUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ModelFileError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (BuildError, BackendUnavailable, RuntimeError) as exc:
        print(f"engine build FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
