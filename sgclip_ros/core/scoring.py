"""SGClip scoring as the reference does it, on already-normalised embeddings.

logit = exp(logit_scale) * cos(text, image); categories and unary predicates are a softmax over
their list per (frame, object), binary predicates a softmax or a multi-label sigmoid per
(frame, ordered pair). Category distributions are pooled over each track's frames.
"""

from __future__ import annotations

import torch

from sgclip_ros.core.concepts import ConceptSet

NO_RELATION = "no relation"
# The reference replaces an empty keyword list by a dummy string so that shapes stay valid.
DUMMY_CONCEPT = "object"


def logits(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: float) -> torch.Tensor:
    """[N, D] x [T, D] -> [N, T] scaled cosine similarities (inputs already L2-normalised)."""
    return scale * image_emb @ text_emb.T


def category_texts(concepts: ConceptSet) -> list[str]:
    return list(concepts.categories) or [DUMMY_CONCEPT]


def unary_texts(concepts: ConceptSet) -> list[str]:
    """The unary text list; in contrast mode each concept c becomes the pair [c, "not c"]."""
    if concepts.unary_mode == "contrast":
        return [t for c in concepts.unary for t in (c, f"not {c}")]
    return list(concepts.unary)


def binary_texts(concepts: ConceptSet) -> list[str]:
    texts = list(concepts.binary)
    if texts and concepts.no_relation and concepts.binary_mode == "softmax":
        texts.append(NO_RELATION)
    return texts


def category_probs(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: float) -> torch.Tensor:
    """[N, C] softmax over the category list."""
    return logits(image_emb, text_emb, scale).softmax(dim=-1)


def unary_probs(
    image_emb: torch.Tensor, text_emb: torch.Tensor, scale: float, mode: str
) -> torch.Tensor:
    """[N, U] probability of each unary concept.

    softmax: one softmax over the list. contrast: for each concept, softmax over [c, not c].
    """
    lg = logits(image_emb, text_emb, scale)
    if mode == "contrast":
        return lg.reshape(lg.shape[0], -1, 2).softmax(dim=-1)[..., 0]
    return lg.softmax(dim=-1)


def binary_probs(
    image_emb: torch.Tensor, text_emb: torch.Tensor, scale: float, mode: str, n_binary: int
) -> torch.Tensor:
    """[P, B] probability of each binary concept (the no-relation column, if any, is dropped).

    sigmoid mode is multi-label, as the reference's: each relation is judged alone, so a pair
    can be both "left of" and "above". It needs weights trained for it (an untrained CLIP's
    scaled cosines are large and positive, so every sigmoid saturates near one).
    """
    lg = logits(image_emb, text_emb, scale)
    if mode == "sigmoid":
        return torch.sigmoid(lg)[:, :n_binary]
    return lg.softmax(dim=-1)[:, :n_binary]


def pool_categories(frame_probs: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool a track's [F, C] per-frame category distributions into one [C] distribution.

    mean: average over frames. max: per-category maximum, renormalised to sum to one.
    """
    if frame_probs.shape[0] == 0:
        raise ValueError("cannot pool the categories of a track seen in no frame")
    if mode == "max":
        pooled = frame_probs.max(dim=0).values
        return pooled / pooled.sum()
    return frame_probs.mean(dim=0)
