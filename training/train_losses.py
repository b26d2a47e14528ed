"""From crop embeddings to per-frame predicate probabilities, and the training losses.

Probabilities are computed by the inference scoring functions (:mod:`sgclip_ros.core.scoring`)
on the same crops, so the trainer optimises exactly what the predictor outputs.

Weak (caption-only) losses, all BCE as the reference:
* each specification of the video's caption -> 1: the temporal-prior-weighted BCE of every
  event's alignment (reference ``fg_loss``, ``align_weight``) plus the BCE of the whole
  specification (``spec_weight``);
* another video's specification -> 0 (``negative_spec_weight``);
* keywords the caption does not use -> 0, for categories (per track), unary (per frame and
  track) and binary predicates (per frame and ordered pair), ``negative_*_weight`` each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sgclip_ros.core import scoring
from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.model import SGClipModel, tokenize
from sgclip_ros.core.model_config import ROLES
from training import spec as S
from training.crop_cache import VideoCrops, normalise
from training.logic import PredicateProbs, Semiring, alignment_loss, evaluate_spec
from training.train_config import LossConfig

EPS = 1e-6


def role_texts(concepts: ConceptSet) -> dict[str, list[str]]:
    """The text list each role scores (what the predictor encodes)."""
    return {"category": scoring.category_texts(concepts), "unary": scoring.unary_texts(concepts),
            "binary": scoring.binary_texts(concepts)}


class Encoders(nn.Module):
    """The model's forward for training: each tower encodes the crops and texts of its roles
    in one batch. Wrapped by DDP, so gradients are averaged over processes."""

    def __init__(self, model: SGClipModel, concepts: ConceptSet) -> None:
        super().__init__()
        self.model = model
        self.texts = {r: t for r, t in role_texts(concepts).items() if t}
        self.tokens = {r: tokenize(model.config, t) for r, t in self.texts.items()}

    def forward(self, obj_pixels: Tensor, pair_pixels: Tensor) -> dict[str, dict[str, Tensor]]:
        """Normalised float pixels -> {"obj"|"pair"|"text"|"scale": {role: tensor}}."""
        out: dict[str, dict[str, Tensor]] = {"obj": {}, "pair": {}, "text": {}, "scale": {}}
        cfg = self.model.config
        for tower in range(cfg.towers):
            roles = [r for r in ROLES if r in self.texts and cfg.tower_index(r) == tower]
            if not roles:
                continue
            clip = self.model.towers[tower]
            obj_roles = [r for r in roles if r != "binary"]
            parts = ([obj_pixels] if obj_roles else []) + ([pair_pixels] if "binary" in roles
                                                            else [])
            emb = clip.encode_image(torch.cat(parts), normalize=True)
            obj_emb, pair_emb = emb[: len(obj_pixels)], emb[len(obj_pixels):]
            if not obj_roles:
                pair_emb = emb
            for role in obj_roles:
                out["obj"][role] = obj_emb
            if "binary" in roles:
                out["pair"]["binary"] = pair_emb
            tokens = torch.cat([self.tokens[r] for r in roles]).to(obj_pixels.device)
            text = clip.encode_text(tokens, normalize=True).split(
                [len(self.texts[r]) for r in roles])
            scale = clip.logit_scale.exp().reshape(())
            for role, role_text in zip(roles, text, strict=True):
                out["text"][role] = role_text
                out["scale"][role] = scale
        return out


def batch_pixels(videos: list[VideoCrops], cfg, device) -> tuple[Tensor, Tensor]:
    """All object and pair crops of a batch of videos as normalised float pixels."""
    obj = torch.cat([v.obj_pixels for v in videos]).to(device)
    pair = torch.cat([v.pair_pixels for v in videos]).to(device)
    return normalise(obj, cfg), normalise(pair, cfg)


def batch_probs(videos: list[VideoCrops], enc: dict, concepts: ConceptSet) -> list[PredicateProbs]:
    """Split a batch's embeddings back into one PredicateProbs per video."""
    names = role_texts(concepts)
    obj_counts = [len(v.obj_index) for v in videos]
    pair_counts = [len(v.pair_index) for v in videos]
    cat = scoring.category_probs(enc["obj"]["category"], enc["text"]["category"],
                                 enc["scale"]["category"]).split(obj_counts)
    unary = binary = None
    if "unary" in enc["obj"]:
        unary = scoring.unary_probs(enc["obj"]["unary"], enc["text"]["unary"],
                                    enc["scale"]["unary"], concepts.unary_mode).split(obj_counts)
    if "binary" in enc["pair"]:
        binary = scoring.binary_probs(enc["pair"]["binary"], enc["text"]["binary"],
                                      enc["scale"]["binary"], concepts.binary_mode,
                                      len(concepts.binary)).split(pair_counts)
    out = []
    for k, video in enumerate(videos):
        t, n = video.num_frames, video.num_tracks
        oi, pi = video.obj_index.to(cat[k].device), video.pair_index.to(cat[k].device)
        ref = cat[k]
        category = _scatter(ref, (t, n, len(names["category"])), (oi[:, 0], oi[:, 1]), cat[k])
        un = _scatter(ref, (t, n, len(concepts.unary)), (oi[:, 0], oi[:, 1]),
                      unary[k] if unary else None)
        bi = _scatter(ref, (t, n, n, len(concepts.binary)), (pi[:, 0], pi[:, 1], pi[:, 2]),
                      binary[k] if binary else None)
        out.append(PredicateProbs(category, un, bi, names["category"], list(concepts.unary),
                                  list(concepts.binary), video.present.to(ref.device)))
    return out


def _scatter(ref: Tensor, shape: tuple, index: tuple, values: Tensor | None) -> Tensor:
    zeros = ref.new_zeros(shape)
    if values is None or len(values) == 0:
        return zeros
    return zeros.index_put(index, values)


def pooled_category(probs: PredicateProbs) -> Tensor:
    """[N, C] per-track categories: mean over the frames a track is present (as inference)."""
    weight = probs.present.to(probs.category.dtype)[..., None]
    return (probs.category * weight).sum(0) / weight.sum(0).clamp_min(1.0)


def _bce_to_zero(p: Tensor) -> Tensor:
    return -torch.log1p(-p.clamp(0.0, 1.0 - EPS))


@dataclass
class NegativeKeywords:
    """Column indices of the keywords a caption does not use."""

    category: list[int]
    unary: list[int]
    binary: list[int]


def negative_keywords(specs: list[S.TemporalSpec], concepts: ConceptSet,
                      converse: dict[str, str]) -> NegativeKeywords:
    """Concept-list entries absent from every spec of the caption (converses count as used)."""
    used: dict[str, set[str]] = {"categories": set(), "unary": set(), "binary": set()}
    for spec in specs:
        for kind, names in S.keywords(spec.formula).items():
            used[kind].update(names)
    inverse = {b: a for a, b in converse.items()}
    used["binary"] |= {converse.get(r, r) for r in used["binary"]}
    used["binary"] |= {inverse.get(r, r) for r in used["binary"]}
    return NegativeKeywords(
        [i for i, c in enumerate(concepts.categories) if c not in used["categories"]],
        [i for i, c in enumerate(concepts.unary) if c not in used["unary"]],
        [i for i, c in enumerate(concepts.binary) if c not in used["binary"]],
    )


def _pair_mask(present: Tensor) -> Tensor:
    pair = present[:, :, None] & present[:, None, :]
    eye = torch.eye(present.shape[1], dtype=torch.bool, device=present.device)
    return pair & ~eye


def mentioned_pairs(specs: list[S.TemporalSpec], assignments: list[dict[str, int]],
                    num_tracks: int) -> Tensor:
    """[N, N] bool: ordered track pairs that a binary atom of a spec relates under its best
    assignment, and their converses."""
    mask = torch.zeros(num_tracks, num_tracks, dtype=torch.bool)
    for spec, assignment in zip(specs, assignments, strict=True):
        for node in S.walk(spec.formula):
            if isinstance(node, S.Binary) and node.subj in assignment and node.obj in assignment:
                a, b = assignment[node.subj], assignment[node.obj]
                mask[a, b] = mask[b, a] = True
    return mask


def keyword_losses(probs: PredicateProbs, neg: NegativeKeywords, reduction: str = "sum",
                   pairs: Tensor | None = None) -> dict[str, Tensor]:
    """BCE -> 0 of the caption's negative keywords, per kind, summed over tracks, frames and
    pairs as the reference (or averaged: ``reduction="mean"``); 0 when there are none.
    ``pairs`` ([N, N] bool) limits the binary keywords to those ordered pairs."""
    present = probs.present.bool()
    zero = probs.unary.sum() * 0.0
    tracks = present.any(0)
    pair_mask = _pair_mask(present)
    if pairs is not None:
        pair_mask = pair_mask & pairs.to(pair_mask.device)[None]
    picked = {
        "neg_category": pooled_category(probs)[tracks][:, neg.category],
        "neg_unary": probs.unary[present][:, neg.unary],
        "neg_binary": probs.binary[pair_mask][:, neg.binary],
    }
    out = {}
    for key, p in picked.items():
        loss = _bce_to_zero(p)
        out[key] = (loss.sum() if reduction == "sum" else loss.mean()) if p.numel() else zero
    return out


def spec_losses(probs: PredicateProbs, specs: list[S.TemporalSpec],
                negatives: list[S.TemporalSpec], cfg: LossConfig,
                semiring: Semiring) -> tuple[dict[str, Tensor], list[dict[str, int]]]:
    """Positive specs -> 1 (alignment and whole spec), other videos' specs -> 0; and each
    positive spec's best assignment (variable -> track, empty when unsatisfiable)."""
    zero = probs.unary.sum() * 0.0
    align, whole = [], []
    assignments = []
    for spec in specs:
        result = evaluate_spec(spec, probs, semiring)
        assignments.append(result.best_assignment or {})
        if not result.best_assignment:  # more entities than tracks: nothing to learn
            continue
        whole.append(-result.log_prob.clamp(max=0.0))
        if spec.events and result.alignment_log is not None:
            align.append(alignment_loss(result, spec.events, 1.0, cfg.encourage))
    neg = [_bce_to_zero(evaluate_spec(s, probs, semiring).prob) for s in negatives]
    return {
        "align": torch.stack(align).mean() if align else zero,
        "spec": torch.stack(whole).mean() if whole else zero,
        "neg_spec": torch.stack(neg).mean() if neg else zero,
    }, assignments


def weak_loss(probs: PredicateProbs, specs, negatives, neg_kw: NegativeKeywords,
              cfg: LossConfig, semiring: Semiring, rules: RelationRules | None = None
              ) -> tuple[Tensor, dict[str, float]]:
    """Total caption-only loss of one video and its parts (for logging)."""
    parts, assignments = spec_losses(probs, specs, negatives, cfg, semiring)
    scope = None  # every pair, as the reference
    if cfg.negative_binary_scope == "mentioned":
        scope = mentioned_pairs(specs, assignments, probs.num_tracks)
    parts.update(keyword_losses(probs, neg_kw, cfg.negative_reduction, scope))
    weights = {"align": cfg.align_weight, "spec": cfg.spec_weight,
               "neg_spec": cfg.negative_spec_weight,
               "neg_category": cfg.negative_category_weight,
               "neg_unary": cfg.negative_unary_weight, "neg_binary": cfg.negative_binary_weight}
    if rules is not None and cfg.relation_consistency_weight:
        parts["consistency"] = relation_consistency(probs, rules)
        weights["consistency"] = cfg.relation_consistency_weight
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _bce(p: Tensor, target: Tensor) -> Tensor:
    p = p.clamp(EPS, 1.0 - EPS)
    return -(target * p.log() + (1.0 - target) * torch.log1p(-p))


def supervised_loss(probs: PredicateProbs, labels: dict[str, Tensor]
                    ) -> tuple[Tensor, dict[str, float]]:
    """Upper-bound baseline: BCE of every per-frame probability against the true labels."""
    present = probs.present.bool()
    zero = probs.unary.sum() * 0.0
    cat_target = labels["category"].to(probs.category)[None].expand_as(probs.category)
    parts = {"category": _bce(probs.category[present], cat_target[present]).mean()}
    un = probs.unary[present]
    parts["unary"] = _bce(un, labels["unary"].to(un)[present]).mean() if un.numel() else zero
    mask = _pair_mask(present)
    bi = probs.binary[mask]
    parts["binary"] = _bce(bi, labels["binary"].to(bi)[mask]).mean() if bi.numel() else zero
    return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}


@dataclass(frozen=True)
class RelationRules:
    """Column indices of converse pairs and mutually exclusive pairs of the binary list."""

    converse: list[tuple[int, int]]
    exclusive: list[tuple[int, int]]

    @classmethod
    def from_names(cls, binary: list[str], converse: dict[str, str],
                   exclusive: dict[str, list[str]]) -> RelationRules:
        index = {name: i for i, name in enumerate(binary)}
        # (r, c) at pair (a, b) is (c, r) at (b, a): keep one of each.
        conv = sorted({(min(index[a], index[b]), max(index[a], index[b]))
                       for a, b in converse.items() if a in index and b in index})
        excl = sorted({(min(index[a], index[b]), max(index[a], index[b]))
                       for a, others in exclusive.items() for b in others
                       if a in index and b in index})
        return cls(conv, excl)


def relation_consistency(probs: PredicateProbs, rules: RelationRules) -> Tensor:
    """Label-free consistency over every present ordered pair and frame: ``p(a, r, b)`` equals
    ``p(b, converse(r), a)`` (squared difference) and two exclusive relations do not hold
    together (BCE of their product -> 0). Mean over pairs; 0 without pairs or rules."""
    mask = _pair_mask(probs.present.bool())
    zero = probs.binary.sum() * 0.0
    if not mask.any() or not (rules.converse or rules.exclusive):
        return zero
    terms = []
    flipped = probs.binary.transpose(1, 2)  # [T, N, N, R]: (b, a) at (a, b)
    for r, c in rules.converse:
        terms.append((probs.binary[..., r] - flipped[..., c])[mask].pow(2))
    for r, c in rules.exclusive:
        terms.append(_bce_to_zero(probs.binary[..., r] * probs.binary[..., c])[mask])
    return torch.stack(terms).sum(0).mean()


def text_uniformity(text: dict[str, Tensor], t: float = 2.0) -> Tensor:
    """Uniformity of each role's text embeddings (Wang & Isola): ``log mean exp(-t |u - v|^2)``
    over distinct pairs, averaged over roles. A randomly initialised text tower maps every
    keyword to nearly the same embedding; this keeps a list's keywords apart (no labels used)."""
    terms = []
    for emb in text.values():
        if len(emb) < 2:
            continue
        dist2 = (2.0 - 2.0 * emb @ emb.T).clamp_min(0.0)
        off = ~torch.eye(len(emb), dtype=torch.bool, device=emb.device)
        terms.append(torch.log(torch.exp(-t * dist2[off]).mean()))
    return torch.stack(terms).mean() if terms else next(iter(text.values())).sum() * 0.0


def clamp_logit_scale(model: SGClipModel, max_scale: float) -> None:
    """Keep exp(logit_scale) <= max_scale, as CLIP training does."""
    with torch.no_grad():
        for tower in model.towers:
            tower.logit_scale.clamp_(0.0, math.log(max_scale))
