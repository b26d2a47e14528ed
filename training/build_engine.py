"""Build TensorRT engines from an exported ONNX folder, ON THE TARGET MACHINE (the robot).

    python -m training.build_engine --onnx MODEL_DIR/onnx_fp16 [--out MODEL_DIR/tensorrt]
        [--fp16 | --bf16] [--max-batch 64] [--opt-batch 8] [--hardware-compatible]
        [--version-compatible] [--workspace-gb 4] [--timing-cache PATH] [--no-verify]

TensorRT 10.x (JetPack 6) and 11.x, both STRONGLY TYPED: the precision of every tensor is the
one the ONNX graph declares, so an fp16/bf16 engine is built from an fp16/bf16 ONNX
(``python -m training.export --formats onnx --precision fp16`` writes ``MODEL_DIR/onnx_fp16``;
``MODEL_DIR/onnx`` holds the fp32 graphs). TensorRT 11 removed weak typing
(``BuilderFlag.FP16``/``BF16``/``INT8``/``OBEY_PRECISION_CONSTRAINTS``, the platform fast-fp16
queries); none of it is used on either version. The network is created with
``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` on 10.x and with no flags on 11.x (always
strongly typed there; the flag is deprecated and ignored). ``--fp16``/``--bf16`` only state what
the ONNX must be: a graph of another precision is refused before anything is built.

Then, on both: ``trt.OnnxParser`` (every parser error printed), one optimisation profile per
encoder over its dynamic batch (min 1, opt, max), a timing cache loaded before and saved after
each build, optional hardware (Ampere+) and version compatibility, ``build_serialized_network``
checked for None. Writes one ``.plan`` per encoder, ``engine.json`` (TensorRT version and major,
strong typing, GPU name and compute capability, precision and where it was read, compatibility
flags, profiles, sha256 of every plan) and a manifest; then loads the engines back and checks
them against the probe embeddings recorded at export.

``--out`` is replaced only when an earlier build_engine run made it (it holds a
``.sgclip_build_engine`` file) or it is empty; any other existing folder is refused, untouched.

Exit codes: 0 built and verified; 1 a build or the verification failed; 2 bad input or --out
(including an ONNX of another precision than --fp16/--bf16 asked for); 3 TensorRT is not
installed or is not 10.x/11.x (the message says how to install it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
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
    supported_major,
)
from sgclip_ros.core.io_spec import PRECISIONS, EncoderSpec, encoder_specs
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


# ONNX TensorProto element types (onnx.TensorProto.FLOAT16 / BFLOAT16): fixed by the ONNX spec,
# written out so a robot without the onnx package can still import this module.
_REDUCED_ONNX_TYPES = {10: "fp16", 16: "bf16"}


class BuildError(RuntimeError):
    """An engine build step failed; the message names the encoder and the step."""


@dataclass(frozen=True)
class BuildMode:
    """How the networks are created and at which precision (read from the ONNX, not chosen)."""

    major: int              # TensorRT major version: 10 or 11
    network_flags: int      # the create_network() argument
    flag_names: tuple       # its set flags, for engine.json
    precision: str          # fp32 | fp16 | bf16, what the ONNX graphs declare
    precision_source: str   # where that was read


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
    """Per TensorRT version and GPU model: a timing cache only fits the pair that wrote it."""
    name = "".join(c if c.isalnum() else "-" for c in gpu["gpu_name"])
    return Path.home() / ".cache" / "sgclip_ros" / f"trt-{trt.__version__}-{name}.timing-cache"


def profile_shapes(spec: EncoderSpec, opt: int, max_batch: int) -> dict:
    """min/opt/max input shapes of ``spec``'s dynamic batch."""
    return {"min": list(spec.input.concrete(1)), "opt": list(spec.input.concrete(opt)),
            "max": list(spec.input.concrete(max_batch))}


def graph_precision(path: Path) -> str | None:
    """fp16 / bf16 when the graph holds tensors of that type (weights, constants, casts), else fp32.

    None when the ``onnx`` package is not installed (a robot need not have it). Reduced-precision
    exports keep LayerNorm/softmax and the I/O in float32, so "any fp16 tensor" is the test,
    not "all tensors fp16".
    """
    try:
        import onnx
    except ImportError:
        return None
    graph = onnx.load(str(path), load_external_data=False).graph
    types = {t.data_type for t in graph.initializer}
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to":
                types.add(attr.i)
            elif node.op_type == "Constant" and attr.name == "value":
                types.add(attr.t.data_type)
    reduced = sorted({_REDUCED_ONNX_TYPES[t] for t in types if t in _REDUCED_ONNX_TYPES})
    if len(reduced) > 1:
        raise ModelFileError(f"{path}: the graph mixes {' and '.join(reduced)}; export one "
                             "precision (python -m training.export --precision ...)")
    return reduced[0] if reduced else "fp32"


def onnx_precision(onnx_dir: Path, manifest: dict, specs) -> tuple[str, str]:
    """(precision, where it was read): the graphs' own types, cross-checked with the manifest."""
    declared = manifest.get("precision")
    found = {spec.name: graph_precision(onnx_dir / spec.filename("onnx")) for spec in specs}
    if None in found.values():
        if declared not in PRECISIONS:
            raise ModelFileError(f"{onnx_dir}: the manifest declares no precision and the onnx "
                                 "package is not installed to read it from the graphs")
        return declared, "export manifest (onnx package not installed)"
    kinds = set(found.values())
    if len(kinds) > 1:
        raise ModelFileError(f"{onnx_dir}: the encoders differ in precision {found}; re-export")
    precision = kinds.pop()
    if declared is not None and declared != precision:
        raise ModelFileError(f"{onnx_dir}: the manifest says {declared}, the graphs are "
                             f"{precision}; re-export with python -m training.export")
    return precision, "onnx graph types"


def check_requested(args, precision: str) -> None:
    """--fp16/--bf16 state what the ONNX must be; TensorRT has no switch to change it."""
    wanted = "bf16" if args.bf16 else "fp16" if args.fp16 else None
    if wanted and wanted != precision:
        raise ValueError(
            f"--{wanted} asked for {wanted} engines, but {args.onnx} holds {precision} graphs: "
            f"TensorRT builds strongly typed networks whose precision is the ONNX's own. Export "
            f"{wanted} ONNX first (python -m training.export --formats onnx --precision "
            f"{wanted}, which writes <model_dir>/onnx_{wanted}) and build from that folder, "
            f"or drop --{wanted}"
        )


def network_flags(trt, major: int) -> tuple[int, tuple]:
    """create_network() flags: STRONGLY_TYPED on 10.x; none on 11.x, where it is the default.

    On 11.x the STRONGLY_TYPED flag is deprecated and ignored (networks are always strongly
    typed), so it is not passed; EXPLICIT_BATCH is gone from 11.x and ignored on 10.x.
    """
    if major >= 11:
        return 0, ()
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED), ("STRONGLY_TYPED",)


def build_mode(trt, args, onnx_manifest: dict, config: SGClipConfig) -> BuildMode:
    """Network flags for this TensorRT and the precision the ONNX declares (checked vs args)."""
    major = supported_major(trt)
    precision, source = onnx_precision(args.onnx, onnx_manifest, encoder_specs(config))
    check_requested(args, precision)
    flags, names = network_flags(trt, major)
    return BuildMode(major, flags, names, precision, source)


def builder_config(trt, builder, args, cache_bytes: bytes):
    """Builder config: workspace, compatibility flags, timing cache (no precision flags)."""
    config = builder.create_builder_config()
    if config is None:
        raise BuildError("TensorRT could not create a builder config")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(args.workspace_gb * (1 << 30)))
    if args.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if args.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    cache = config.create_timing_cache(cache_bytes)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise BuildError("TensorRT rejected the timing cache (delete it or pass --timing-cache)")
    return config


def parse_onnx(trt, builder, logger, path: Path, mode: BuildMode):
    """Strongly typed network from ``path``; every parser error is printed, then BuildError."""
    network = builder.create_network(mode.network_flags)
    if network is None:
        raise BuildError(f"{path}: TensorRT could not create a network definition")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        for error in errors:
            print(f"  ONNX parser error ({path.name}): {error}", file=sys.stderr)
        raise BuildError(f"{path}: the ONNX parser reported {len(errors)} error(s)")
    return network, parser


def build_plan(trt, logger, path: Path, spec: EncoderSpec, args, cache_path: Path,
               mode: BuildMode) -> bytes:
    """One serialised engine for one encoder; an API this TensorRT lacks is a BuildError."""
    try:
        return _build_plan(trt, logger, path, spec, args, cache_path, mode)
    except AttributeError as exc:  # a future TensorRT dropping more: say so, no traceback
        raise BuildError(f"TensorRT {trt.__version__} lacks an API this build uses ({exc}); "
                         "supported: TensorRT 10.x and 11.x") from exc


def _build_plan(trt, logger, path: Path, spec: EncoderSpec, args, cache_path: Path,
                mode: BuildMode) -> bytes:
    """build_plan's steps: network, config, profile, build; the timing cache loaded and saved."""
    builder = trt.Builder(logger)
    if builder is None:
        raise BuildError("TensorRT could not create a builder")
    network, _parser = parse_onnx(trt, builder, logger, path, mode)
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


def engine_metadata(trt, gpu: dict, args, folder: Path, specs, onnx_manifest: dict,
                    mode: BuildMode) -> dict:
    """``engine.json``: what the runtime checks before deserialising."""
    plans = {}
    for spec in specs:
        path = folder / spec.filename("plan")
        plans[spec.name] = {"file": path.name, "sha256": sha256_file(path),
                            "bytes": path.stat().st_size}
    return {
        "format": ENGINE_FORMAT,
        "tensorrt_version": trt.__version__,
        "tensorrt_major": mode.major,
        "typing": "strong",
        "network_flags": list(mode.flag_names),
        **gpu,
        "precision": mode.precision,
        "precision_source": mode.precision_source,
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


def build_folder(trt, args, onnx_manifest: dict, config: SGClipConfig, folder: Path,
                 mode: BuildMode) -> dict:
    """Build every encoder into ``folder``, with engine.json, texts, probe and manifest."""
    gpu = gpu_info()
    logger = trt.Logger(trt.Logger.WARNING)
    cache_path = args.timing_cache or default_cache_path(trt, gpu)
    specs = encoder_specs(config)
    folder.mkdir(parents=True)
    for spec in specs:
        start = time.perf_counter()
        plan = build_plan(trt, logger, args.onnx / spec.filename("onnx"), spec, args,
                          cache_path, mode)
        (folder / spec.filename("plan")).write_bytes(plan)
        print(f"  built {spec.name}.plan ({len(plan) / 1e6:.1f} MB, "
              f"{time.perf_counter() - start:.0f} s)", flush=True)
    metadata = engine_metadata(trt, gpu, args, folder, specs, onnx_manifest, mode)
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
    precision.add_argument("--fp16", action="store_true",
                           help="require an fp16 ONNX (precision comes from the graph)")
    precision.add_argument("--bf16", action="store_true",
                           help="require a bf16 ONNX (precision comes from the graph)")
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
    mode = build_mode(trt, args, onnx_manifest, config)  # refuses before building, too
    print(f"TensorRT {trt.__version__}: strongly typed networks "
          f"(create_network flags {list(mode.flag_names) or 'none'}), {mode.precision} "
          f"from the {mode.precision_source}", flush=True)
    tmp = args.out.parent / f".{args.out.name}.partial"  # a name only this tool uses
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        manifest = build_folder(trt, args, onnx_manifest, config, tmp, mode)
        if not args.no_verify:
            verify_engines(tmp, manifest, config)
        replace_out_dir(tmp, args.out, MARKER)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {args.out} ({mode.precision}, strongly typed, TensorRT {trt.__version__})")
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
