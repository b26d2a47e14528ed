"""Differentiable temporal logic over per-frame predicate probabilities (Scallop stand-in).

Given one video's probabilities (:class:`PredicateProbs`) and a
:class:`~training.spec.TemporalSpec`, :func:`evaluate_spec` computes (i) how well the spec
holds and (ii) for each event of the spec's ``Sequence``, how well the spec holds with that
event aligned at each frame.

**Proofs.** A proof of a spec picks a track for every variable (distinct tracks for distinct
variables), and the frames that witness each temporal operator: the frame of ``Finally``, the
switch frame of ``Until``, the interval of every ``Sequence`` event. Its weight is the product of
the probabilities of the atoms it uses: each ``Category`` atom once (a track-level fact), each
per-frame atom once per frame it is checked at (``Not`` gives ``1 - p``; ``And`` multiplies).
A track absent from a frame makes its atoms false there (``p = 0``).

**Semiring.** Scores live in log space; ``⊗`` is ``+`` and ``⊕`` combines alternative proofs:
* :class:`MaxProduct` (default): ``⊕ = max``. The value is the probability of the single best
  proof: Scallop's top-k-proofs provenance with k = 1 (the reference uses k = 3, whose value lies
  between this and the noisy-OR of the top 3). It is a true probability in [0, 1], so it can go
  straight into the reference's BCE losses; gradients reach the atoms of the best proof only.
* :class:`SmoothMaxProduct` ``(τ)``: ``⊕ = τ·logsumexp(x/τ)``. Gradients reach every near-best
  proof. It upper-bounds max-product by at most ``τ·log(#proofs)`` and tends to it as τ → 0;
  probabilities are clipped at 1.
Both are commutative semirings, so the dynamic programmes below equal the brute-force ⊕ over all
proofs exactly (the tests check this by enumeration).

Temporal semantics on a finite trace of T frames (value "from start frame s"):
``Finally φ = ⊕_{t≥s} φ(t)``, ``Globally φ = ⊗_{t≥s} φ(t)``, ``Next φ = φ(s+1)`` (false at the
end), ``φ Until ψ = ⊕_{t≥s} ψ(t) ⊗ ⊗_{s≤u<t} φ(u)`` (as the reference's ``ltl.scl``), and
``Sequence(e1..ek)``: ⊕ over intervals ``s ≤ a1 ≤ b1 < a2 ≤ b2 < ...`` of ⊗ of every event on
every frame of its interval.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from training import spec as S

LOG_ZERO = -1.0e9  # log-space "false": finite so max/logsumexp gradients never turn into NaN
DEFAULT_EPS = 1e-12  # probabilities are clamped to [eps, 1] before the log
MAX_ASSIGNMENTS = 200_000


class MaxProduct:
    """``⊕ = max`` in log space: the best single proof (Viterbi / top-1 proof)."""

    name = "max-product"

    def plus(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.maximum(a, b)

    def sum(self, x: Tensor, dim: int) -> Tensor:
        return x.amax(dim=dim)


class SmoothMaxProduct:
    """``⊕ = τ·logsumexp(x/τ)``: a smooth upper bound of max-product that spreads gradients."""

    name = "smooth-max-product"

    def __init__(self, temperature: float = 0.1) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def plus(self, a: Tensor, b: Tensor) -> Tensor:
        tau = self.temperature
        return tau * torch.logaddexp(a / tau, b / tau)

    def sum(self, x: Tensor, dim: int) -> Tensor:
        tau = self.temperature
        return tau * torch.logsumexp(x / tau, dim=dim)


Semiring = MaxProduct | SmoothMaxProduct


def make_semiring(name: str = "max", temperature: float = 0.1) -> Semiring:
    """``"max"`` -> MaxProduct, ``"smooth"`` -> SmoothMaxProduct(temperature)."""
    if name in ("max", MaxProduct.name):
        return MaxProduct()
    if name in ("smooth", SmoothMaxProduct.name):
        return SmoothMaxProduct(temperature)
    raise ValueError(f"unknown semiring {name!r}: use 'max' or 'smooth'")


@dataclass
class PredicateProbs:
    """One video's predicate probabilities and the names that index them.

    ``category``: [N, C] per track, or [T, N, C] per frame (mean-pooled over present frames);
    ``unary``: [T, N, U]; ``binary``: [T, N, N, B] with [t, subject, object, predicate];
    ``present``: [T, N] (bool or 0/1), None = every track in every frame.
    Names are lists (index = position) or name -> index maps into the last dimension.
    """

    category: Tensor
    unary: Tensor
    binary: Tensor
    category_names: Sequence[str] | Mapping[str, int]
    unary_names: Sequence[str] | Mapping[str, int]
    binary_names: Sequence[str] | Mapping[str, int]
    present: Tensor | None = None

    def __post_init__(self) -> None:
        if self.unary.dim() != 3 or self.binary.dim() != 4:
            raise ValueError(f"unary must be [T, N, U] and binary [T, N, N, B], got "
                             f"{tuple(self.unary.shape)} and {tuple(self.binary.shape)}")
        frames, tracks = self.unary.shape[:2]
        if tuple(self.binary.shape[:3]) != (frames, tracks, tracks):
            raise ValueError(f"binary has shape {tuple(self.binary.shape)}, "
                             f"expected [{frames}, {tracks}, {tracks}, B]")
        if tuple(self.category.shape[:-1]) not in ((tracks,), (frames, tracks)):
            raise ValueError(f"category has shape {tuple(self.category.shape)}, "
                             f"expected [{tracks}, C] or [{frames}, {tracks}, C]")
        if self.present is not None and tuple(self.present.shape) != (frames, tracks):
            raise ValueError(f"present has shape {tuple(self.present.shape)}, "
                             f"expected {(frames, tracks)}")
        for kind in ("category", "unary", "binary"):
            _index(getattr(self, f"{kind}_names"), kind, int(getattr(self, kind).shape[-1]))

    @property
    def num_frames(self) -> int:
        return int(self.unary.shape[0])

    @property
    def num_tracks(self) -> int:
        return int(self.unary.shape[1])


@dataclass
class SpecResult:
    """Outcome of :func:`evaluate_spec`.

    ``log_prob``: log of the spec's value (scalar); ``alignment_log``: [K, T], entry (i, t) is
    the log value of the proofs that put event i's interval over frame t (None when the spec
    has no Sequence); ``best_assignment``: variable -> track index of the best assignment.
    """

    log_prob: Tensor
    alignment_log: Tensor | None
    best_assignment: dict[str, int]

    @property
    def prob(self) -> Tensor:
        return self.log_prob.clamp(max=0.0).exp()

    @property
    def alignment(self) -> Tensor | None:
        """[K, T] alignment values as probabilities (the reference's ``aligned_t1..t3``)."""
        if self.alignment_log is None:
            return None
        return self.alignment_log.clamp(max=0.0).exp()


def evaluate_spec(
    spec: S.TemporalSpec | S.Formula,
    probs: PredicateProbs,
    semiring: Semiring | None = None,
    eps: float = DEFAULT_EPS,
) -> SpecResult:
    """Value of ``spec`` on ``probs`` under ``semiring`` (default max-product); see module doc."""
    formula = spec.formula if isinstance(spec, S.TemporalSpec) else spec
    S.validate(formula)
    semiring = semiring or MaxProduct()
    body, categories = hoist_categories(formula)
    names = S.variables(formula)
    grounding = _Grounding(probs, names, semiring, eps)
    sequence, others = S.split_sequence(body)
    if len(grounding.assignments) == 0:
        return _unsatisfiable(probs, sequence)
    # Score of each assignment without the Sequence: its categories and the other conjuncts.
    other = grounding.category_score(categories)
    for conjunct in others:
        other = other + grounding.evaluate(conjunct)[0]
    per_assignment, alignment_log = other, None
    if sequence is not None:
        events = [grounding.evaluate(event) for event in sequence.events]
        suffix = _sequence_suffix(events, semiring)
        per_assignment = other + suffix[0][0]
        aligned = _sequence_alignment(events, suffix, semiring)  # [K, T, M]
        alignment_log = semiring.sum(aligned + other, -1)
    best = int(per_assignment.argmax())
    return SpecResult(
        log_prob=semiring.sum(per_assignment, 0),
        alignment_log=alignment_log,
        best_assignment={v: int(grounding.assignments[best, i]) for i, v in enumerate(names)},
    )


def _unsatisfiable(probs: PredicateProbs, sequence: S.Sequence | None) -> SpecResult:
    """More variables than tracks: no proof exists (kept on the graph so backward() works)."""
    anchor = probs.unary.sum() * 0.0 + LOG_ZERO
    alignment = None
    if sequence is not None:
        alignment = anchor.expand(len(sequence.events), probs.num_frames)
    return SpecResult(anchor, alignment, {})


def hoist_categories(formula: S.Formula) -> tuple[S.Formula, list[S.Category]]:
    """Replace Category atoms by Top and return them (distinct, in order).

    Valid because :func:`training.spec.validate` only allows Category atoms where they must
    hold, and they do not depend on time: each is then a factor of the whole proof, once.
    """
    found = list(dict.fromkeys(n for n in S.walk(formula) if isinstance(n, S.Category)))
    return _replace_categories(formula), found


def _replace_categories(formula: S.Formula) -> S.Formula:
    if isinstance(formula, S.Category):
        return S.Top()
    if isinstance(formula, S.And):
        return S.And(*(_replace_categories(a) for a in formula.args))
    if isinstance(formula, S.Sequence):
        return S.Sequence(*(_replace_categories(e) for e in formula.events))
    if isinstance(formula, S.Until):
        return S.Until(_replace_categories(formula.left), _replace_categories(formula.right))
    if isinstance(formula, (S.Not, S.Finally, S.Globally, S.Next)):
        return type(formula)(_replace_categories(formula.arg))
    return formula


def assignments(num_tracks: int, num_variables: int) -> Tensor:
    """[M, V] long: every injective map of V variables to N tracks (M = N!/(N-V)!)."""
    count = math.perm(num_tracks, num_variables) if num_variables <= num_tracks else 0
    if count > MAX_ASSIGNMENTS:
        raise ValueError(f"{count} assignments of {num_variables} variables to {num_tracks} "
                         f"tracks exceed {MAX_ASSIGNMENTS}; keep fewer tracks (top-k)")
    rows = list(itertools.permutations(range(num_tracks), num_variables))
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), num_variables)


class _Grounding:
    """Log tables of one video plus the assignments; evaluates formulas to [T, M] scores."""

    def __init__(self, probs: PredicateProbs, names: Sequence[str], semiring: Semiring,
                 eps: float) -> None:
        self.semiring = semiring
        self.eps = eps
        self.frames = probs.num_frames
        self.var_index = {name: i for i, name in enumerate(names)}
        self.assignments = assignments(probs.num_tracks, len(names)).to(probs.unary.device)
        unary, binary = _masked(probs)
        self.log_unary, self.log_not_unary = _logs(unary, eps)
        self.log_binary, self.log_not_binary = _logs(binary, eps)
        self.log_category = _pooled_category(probs).clamp(eps, 1.0).log()
        self.names = {kind: _index(getattr(probs, f"{kind}_names"), kind,
                                   int(getattr(probs, kind).shape[-1]))
                      for kind in ("category", "unary", "binary")}

    def _track(self, var: str) -> Tensor:
        return self.assignments[:, self.var_index[var]]

    def _name(self, kind: str, name: str) -> int:
        try:
            return self.names[kind][name]
        except KeyError:
            raise KeyError(f"{kind} predicate {name!r} is not among the scored names "
                           f"{sorted(self.names[kind])}") from None

    def category_score(self, categories: list[S.Category]) -> Tensor:
        score = torch.zeros(len(self.assignments), dtype=self.log_category.dtype,
                            device=self.log_category.device)
        for atom in categories:
            score = score + self.log_category[self._track(atom.var),
                                              self._name("category", atom.name)]
        return score

    def atom(self, atom: S.Unary | S.Binary, negated: bool = False) -> Tensor:
        if isinstance(atom, S.Unary):
            table = self.log_not_unary if negated else self.log_unary
            return table[:, self._track(atom.var), self._name("unary", atom.name)]
        table = self.log_not_binary if negated else self.log_binary
        return table[:, self._track(atom.subj), self._track(atom.obj),
                     self._name("binary", atom.name)]

    def evaluate(self, formula: S.Formula) -> Tensor:
        """[T, M]: log value of ``formula`` from each start frame, for each assignment."""
        if isinstance(formula, (S.Unary, S.Binary)):
            return self.atom(formula)
        if isinstance(formula, S.Top):
            return self.log_unary.new_zeros(self.frames, len(self.assignments))
        if isinstance(formula, S.And):
            return sum((self.evaluate(arg) for arg in formula.args[1:]),
                       self.evaluate(formula.args[0]))
        if isinstance(formula, S.Not):
            return self._negation(formula.arg)
        return self._temporal(formula)

    def _negation(self, arg: S.Formula) -> Tensor:
        if isinstance(arg, (S.Unary, S.Binary)):
            return self.atom(arg, negated=True)
        return (1.0 - self.evaluate(arg).exp()).clamp_min(self.eps).log()

    def _temporal(self, formula: S.Formula) -> Tensor:
        plus = self.semiring.plus
        if isinstance(formula, S.Finally):
            return _backward_scan(self.evaluate(formula.arg), lambda x, acc: plus(x, acc))
        if isinstance(formula, S.Globally):
            return _backward_scan(self.evaluate(formula.arg), lambda x, acc: x + acc)
        if isinstance(formula, S.Next):
            inner = self.evaluate(formula.arg)
            return torch.cat([inner[1:], torch.full_like(inner[:1], LOG_ZERO)])
        if isinstance(formula, S.Until):
            left, right = self.evaluate(formula.left), self.evaluate(formula.right)
            return _until(left, right, plus)
        if isinstance(formula, S.Sequence):
            events = [self.evaluate(event) for event in formula.events]
            return _sequence_suffix(events, self.semiring)[0][: self.frames]
        raise S.SpecError(f"cannot evaluate {formula!r}")


def _masked(probs: PredicateProbs) -> tuple[Tensor, Tensor]:
    if probs.present is None:
        return probs.unary, probs.binary
    present = probs.present.to(probs.unary.dtype)
    pair = present[:, :, None] * present[:, None, :]
    return probs.unary * present[..., None], probs.binary * pair[..., None]


def _logs(p: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    return p.clamp(eps, 1.0).log(), (1.0 - p).clamp(eps, 1.0).log()


def _pooled_category(probs: PredicateProbs) -> Tensor:
    if probs.category.dim() == 2:
        return probs.category
    if probs.present is None:
        return probs.category.mean(0)
    weight = probs.present.to(probs.category.dtype)[..., None]
    return (probs.category * weight).sum(0) / weight.sum(0).clamp_min(1.0)


def _index(names: Sequence[str] | Mapping[str, int], kind: str, width: int) -> dict[str, int]:
    """name -> column; a list must match the tensor width, a map must point inside it."""
    if isinstance(names, Mapping):
        index = dict(names)
        if any(not 0 <= i < width for i in index.values()):
            raise ValueError(f"{kind} name map points outside the {width} columns: {index}")
        return index
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"duplicate {kind} names: {list(names)}")
    if len(names) != width:
        raise ValueError(f"{kind} has {width} columns but {len(names)} names")
    return index


def _backward_scan(x: Tensor, step) -> Tensor:
    """out[T-1] = x[T-1]; out[s] = step(x[s], out[s+1])."""
    out = [x[-1]]
    for s in range(x.shape[0] - 2, -1, -1):
        out.append(step(x[s], out[-1]))
    return torch.stack(out[::-1])


def _until(left: Tensor, right: Tensor, plus) -> Tensor:
    """U(s) = right(s) ⊕ (left(s) ⊗ U(s+1)), U(T-1) = right(T-1)."""
    out = [right[-1]]
    for s in range(right.shape[0] - 2, -1, -1):
        out.append(plus(right[s], left[s] + out[-1]))
    return torch.stack(out[::-1])


def _sequence_suffix(events: list[Tensor], semiring: Semiring) -> list[Tensor]:
    """Q[i] ([T+1, M]): value of "events i.. fit in frames [s, T)"; Q[k] = 0 everywhere.

    H(a) (event i starts at a) = e_i(a) ⊗ (Q[i+1](a+1) ⊕ H(a+1)) and Q[i](s) = H(s) ⊕ Q[i](s+1):
    every choice of (start, end) per event is counted exactly once.
    """
    plus = semiring.plus
    frames = events[0].shape[0]
    zero_row = torch.full_like(events[0][0], LOG_ZERO)
    suffix = [events[0].new_zeros(frames + 1, events[0].shape[1])]
    for event in reversed(events):
        after = suffix[0]
        starts, ends = [zero_row], [zero_row]  # values at position T
        for a in range(frames - 1, -1, -1):
            starts.append(event[a] + plus(after[a + 1], starts[-1]))
            ends.append(plus(starts[-1], ends[-1]))
        suffix.insert(0, torch.stack(ends[::-1]))
    return suffix


def _sequence_alignment(events: list[Tensor], suffix: list[Tensor],
                        semiring: Semiring) -> Tensor:
    """[K, T, M]: ⊕ over proofs of the Sequence from frame 0 whose event i covers frame t.

    Splits each such proof at t: L(t) = events < i placed before event i's start, and event i
    from its start to t (inclusive); E(t) = event i after t until its end, then events > i.
    """
    plus = semiring.plus
    frames = events[0].shape[0]
    zero_row = torch.full_like(events[0][0], LOG_ZERO)
    before = [torch.zeros_like(e) for e in events[0]]  # R(a): earlier events fit in [0, a)
    rows = []
    for index, event in enumerate(events):
        upto = []  # L(t)
        for t in range(frames):
            previous = upto[-1] if upto else zero_row
            upto.append(event[t] + plus(before[t], previous))
        after = suffix[index + 1]
        rest = [after[frames]]  # E(T-1)
        for t in range(frames - 2, -1, -1):
            rest.append(plus(after[t + 1], event[t + 1] + rest[-1]))
        rest = rest[::-1]
        rows.append(torch.stack([upto[t] + rest[t] for t in range(frames)]))
        before = [zero_row]
        for a in range(1, frames):
            before.append(plus(before[-1], upto[a - 1]))
    return torch.stack(rows)


# ----------------------------------------------------------------------------- temporal prior


def temporal_prior(location_range: tuple[float, float], num_frames: int,
                   encourage: float = 0.5) -> Tensor:
    """[T] triangular weights around an event's expected location (reference ``fg_loss``):

    ``w(s) = max(0, 1 - |s/T - mid| / (end - start + encourage))`` for frames s = 0..T-1, where
    ``(start, end)`` is the event's ``video location precise`` and ``mid`` its centre.
    """
    start, end = location_range
    mid = (start + end) / 2.0
    width = end - start + encourage
    position = torch.arange(num_frames, dtype=torch.float64) / max(num_frames, 1)
    return (1.0 - (position - mid).abs() / width).clamp_min(0.0)


def alignment_distribution(alignment_log: Tensor) -> Tensor:
    """[K, T] -> per-event distribution over frames (softmax of the alignment log values)."""
    return torch.softmax(alignment_log, dim=-1)


def alignment_loss(result: SpecResult, events: Sequence[S.Event], target: float,
                   encourage: float = 0.5, eps: float = 1e-6) -> Tensor:
    """The reference's prior-weighted BCE (``fg_loss``): for each event i, the mean over frames
    of BCE(alignment_i(t), target) weighted by :func:`temporal_prior`, averaged over events.

    Frames where event i cannot be placed at all (e.g. the second event on frame 0) are left
    out, as the reference only sees the (event, frame) tuples its program derives.
    """
    if result.alignment_log is None or not events:
        raise ValueError("alignment_loss needs a spec with a Sequence and its events")
    frames = result.alignment_log.shape[-1]
    log_p = result.alignment_log.clamp(max=math.log1p(-eps))
    log_not_p = torch.log1p(-log_p.exp())
    bce = -(target * log_p + (1.0 - target) * log_not_p)
    reachable = result.alignment_log.detach() > LOG_ZERO / 2
    losses = []
    for index, event in enumerate(events):
        prior = temporal_prior(event.timing.location_range, frames, encourage).to(bce)
        weight = prior * reachable[index]
        if weight.sum() > 0:
            losses.append((bce[index] * weight).sum() / weight.sum())
    if not losses:  # nothing derivable: no signal, but stay on the graph
        return result.log_prob * 0.0
    return torch.stack(losses).mean()
