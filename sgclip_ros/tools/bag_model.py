"""The bag runner's model and predictor: loaded as the node loads them (backend choice and
fallbacks, sha256 manifest checks), from a --model-dir relative to the current directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sgclip_ros.tools.bag_messages import package_path


def resolve_model_dir(text: str) -> tuple[str, str]:
    """(model_root, model_dir) for load_backend: see the bag runner's docstring."""
    path = Path(text).expanduser()
    if path.is_dir():
        return os.path.realpath(path), "."
    if path.exists():
        raise ValueError(f"--model-dir {text}: {path.absolute()} is not a folder")
    looked = [str(path.absolute())]
    if "/" not in text and os.sep not in text and text not in (".", ".."):
        try:
            shipped = package_path(f"models/{text}")
        except FileNotFoundError as exc:
            looked.append(str(exc).split(" not found in ", 1)[-1])
        else:
            return str(shipped.parent), text
    raise FileNotFoundError(f"--model-dir {text}: no such folder (looked in {'; '.join(looked)})")


def load_backend(args):
    """(BackendChoice, model folder or "") from --model-dir (manifest-checked) or tiny."""
    from sgclip_ros.core.backend_select import UNTRAINED_TINY
    from sgclip_ros.core.backend_select import load_backend as select_backend

    if args.untrained_tiny or args.model_dir == UNTRAINED_TINY:
        print(
            "WARNING: using an UNTRAINED sgclip-tiny model (random weights, seed 0): the graphs "
            "have the right structure and stamps, but labels and relations are meaningless.",
            file=sys.stderr,
        )
        root, name = "", UNTRAINED_TINY
    else:
        root, name = resolve_model_dir(args.model_dir)
    choice = select_backend(args.backend, root, name, args.device)
    for reason in choice.fallbacks:
        print(f"bag: backend fallback: {reason}", file=sys.stderr)
    return choice, (os.path.realpath(os.path.join(root, name)) if root else "")


def domain_check(model_dir: str, concepts):
    """The concept lists against the domain the model folder declares (summary WARN line and
    ``model_domain`` key); ``model_dir`` "" is the untrained tiny model (no domain)."""
    from sgclip_ros.core.backend_select import UNTRAINED_TINY
    from sgclip_ros.core.domain import check_domain, read_domain

    if not model_dir:
        return check_domain(UNTRAINED_TINY, None, concepts)
    return check_domain(Path(model_dir).name, read_domain(model_dir), concepts)


def make_predictor(args, backend):
    from sgclip_ros.core.concepts import load_concepts
    from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
    from sgclip_ros.core.window import WindowConfig

    concepts = load_concepts(args.concepts or package_path("config/concepts/shapes.yaml"))
    window = WindowConfig(size=args.window, stride=args.stride)
    return SGClipPredictor(backend, concepts, PredictorConfig(window=window))


