"""MODEL_CARD.md text for the model directories ``training.fetch_weights`` writes.

The quality statements cite the ESCA paper (arXiv 2510.15963) as summarised in the project's
reference notes; nothing here was measured by this project, and the card says so.
"""

from __future__ import annotations

import textwrap

from sgclip_ros.core.domain import card_section
from sgclip_ros.core.model_config import SGClipConfig

PAPER = "ESCA paper (arXiv 2510.15963)"
# The paper's figures, SGClip vs its zero-shot CLIP baseline (openai/clip-vit-base-patch32).
PAPER_NUMBERS = """\
| task (paper) | CLIP ViT-B/32 (OpenAI) | SGClip (VINE) |
|---|---|---|
| ActivityNet action recognition, zero-shot | 74.37 | 76.34 |
| ActivityNet, fine-tuned on 1% | 78.79 | 80.10 |
| ActivityNet, fine-tuned on 5% | 80.02 | 92.10 (86.05 on the project page) |
| VidVRD relations after fine-tuning, R@1 / R@5 / R@10 | .085 / .250 / .353 | .087 / .270 / .385 |
"""

_QUALITY = {
    "openclip": (
        "This is the **zero-shot CLIP baseline** of the {paper}: one pretrained CLIP copied into "
        "the category, unary and binary towers, scoring raw keywords with no learned relations. "
        "Categories and attributes are real open-vocabulary scores; relations are CLIP's "
        "impression of the pair crop (the paper's VidVRD relation numbers for this baseline are "
        "after fine-tuning). The paper's CLIP column is, as far as its public code shows, "
        "OpenAI's ViT-B/32, the backbone SGClip starts from (`--openclip ViT-B-32:openai`); "
        "other pretrained tags were not measured there."
    ),
    "vine": (
        "These are the **published SGClip weights** (VINE) of the {paper}: three CLIP towers "
        "trained from captions of 87K LLaVA-Video-178K clips, the SGClip column below."
    ),
}


def source_lines(source: dict) -> str:
    """Markdown bullet list of where the weights came from (the manifest's ``source``)."""
    order = ("kind", "repo", "filename", "revision", "model", "pretrained", "url", "file",
             "sha256")
    return "\n".join(f"- {key}: `{source[key]}`" for key in order if source.get(key))


def card_text(config: SGClipConfig, source: dict, command: str) -> str:
    """MODEL_CARD.md: what the weights are, where they came from, how good the paper says
    they are, their domain and how to use them."""
    kind = source["kind"]
    clip, vision = config.clip, config.clip["vision_cfg"]
    towers = "one tower shared by" if config.towers == 1 else f"{config.towers} towers for"
    about = textwrap.fill(
        f"Written by `training.fetch_weights`: {towers} the category, unary and binary roles; "
        f"vision {vision['layers']} layers of width {vision['width']}, patch "
        f"{vision['patch_size']}, image size {config.preprocess.image_size}; embedding "
        f"{clip['embed_dim']}; quick_gelu {bool(clip.get('quick_gelu', False))}.", width=96)
    quality = textwrap.fill(_QUALITY[kind].format(paper=PAPER), width=96)
    return f"""# {config.name}: {'SGClip (VINE)' if kind == 'vine' else 'zero-shot CLIP'} weights

{about}

    {command}

## Source
{source_lines(source)}

The sha256 is of the downloaded (or given) file, checked against `--sha256` before the file was
read when one was given; `manifest.json` pins every file of this folder, and the node refuses
the folder if any of them changes.

## Quality
{quality}

{PAPER_NUMBERS}
These are the paper's figures (ground-truth boxes and pairs given, hit = true label in the
top K), not measured by this project. Measure your own data with `training.evaluate`.

{card_section(config.domain)}
## Use
- Node: `model_root:=<parent folder>` and `model_dir:=<this folder's name>`.
- Bag runner: `--model-dir <this folder>`; engines: `python -m training.export --checkpoint
  <this folder> --out <this folder>` (docs/engines.md).
- Fine-tuning: `model: {{config: <this folder>/config.json, init: <this folder>}}` in a training
  YAML (docs/training.md).
"""
