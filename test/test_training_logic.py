"""training.logic against brute-force enumeration of every proof (assignment x alignment)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from training import logic
from training.spec import (
    And,
    Binary,
    Category,
    Event,
    EventTiming,
    Finally,
    Globally,
    Next,
    Not,
    Sequence,
    TemporalSpec,
    Top,
    Unary,
    Until,
)

CATS = ["circle", "square"]
UNARY = ["red", "blue"]
BINARY = ["left of", "touching"]
EPS = logic.DEFAULT_EPS

L, TOUCH = "left of", "touching"
FORMULAS = {
    "finally": Finally(And(Unary("A", "red"), Binary("A", L, "B"))),
    "globally_not": Globally(Not(Binary("A", TOUCH, "B"))),
    "until": Until(Unary("A", "red"), Binary("A", TOUCH, "B")),
    "next_finally": Next(Finally(Unary("B", "blue"))),
    "globally_finally": Globally(Finally(Unary("A", "red"))),
    "sequence3": And(Category("A", "circle"), Category("B", "square"),
                     Sequence(Binary("A", L, "B"), Binary("A", TOUCH, "B"),
                              Not(Unary("A", "red")))),
    "sequence_and_globally": And(
        Sequence(Unary("A", "red"), And(Category("A", "circle"), Binary("A", L, "B"))),
        Globally(Unary("B", "blue"))),
    "nested_sequence": Finally(Sequence(Unary("A", "red"), Unary("A", "blue"))),
    "until_sequence": Until(Not(And(Unary("A", "red"), Unary("B", "blue"))),
                            Sequence(Binary("A", L, "B"), Binary("B", L, "A"))),
    "three_vars": Sequence(Binary("A", L, "B"), Binary("B", L, "C")),
    "category_twice": Sequence(And(Category("A", "circle"), Unary("A", "red")),
                               And(Category("A", "circle"), Unary("A", "blue"))),
}
SIZES = [(1, 3), (4, 2), (5, 3)]


def random_probs(frames, tracks, seed, present=False, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    mask = (torch.rand(frames, tracks, generator=gen) > 0.2) if present else None
    return logic.PredicateProbs(
        torch.rand(tracks, len(CATS), generator=gen, dtype=dtype),
        torch.rand(frames, tracks, len(UNARY), generator=gen, dtype=dtype),
        torch.rand(frames, tracks, tracks, len(BINARY), generator=gen, dtype=dtype),
        CATS, UNARY, BINARY, mask,
    )


# ----------------------------------------------------------------------------- brute force


class World:
    """Plain-Python view of the probabilities under one assignment of variables to tracks."""

    def __init__(self, probs, assignment):
        self.T = probs.num_frames
        unary, binary = probs.unary.tolist(), probs.binary.tolist()
        present = probs.present.tolist() if probs.present is not None else None
        self.unary, self.binary, self.present = unary, binary, present
        self.assignment = assignment

    def on(self, t, track):
        return self.present is None or bool(self.present[t][track])

    def atom_prob(self, atom, t):
        a = self.assignment
        if isinstance(atom, Unary):
            p = self.unary[t][a[atom.var]][UNARY.index(atom.name)]
            return p if self.on(t, a[atom.var]) else 0.0
        s, o = a[atom.subj], a[atom.obj]
        p = self.binary[t][s][o][BINARY.index(atom.name)]
        return p if self.on(t, s) and self.on(t, o) else 0.0


def clog(p):
    return math.log(min(max(p, EPS), 1.0))


def products(lists):
    """All sums picking one log weight from each list (cartesian product)."""
    return [sum(combo) for combo in itertools.product(*lists)]


def derivations(f, s, w):
    """Log weights of every proof of formula ``f`` from frame ``s`` (categories excluded)."""
    T = w.T
    if isinstance(f, (Top, Category)):
        return [0.0]
    if isinstance(f, (Unary, Binary)):
        return [clog(w.atom_prob(f, s))]
    if isinstance(f, Not):
        if isinstance(f.arg, (Unary, Binary)):
            return [clog(1.0 - w.atom_prob(f.arg, s))]
        (value,) = derivations(f.arg, s, w)
        return [clog(1.0 - math.exp(value))]
    if isinstance(f, And):
        return products([derivations(a, s, w) for a in f.args])
    if isinstance(f, Finally):
        return [d for t in range(s, T) for d in derivations(f.arg, t, w)]
    if isinstance(f, Globally):
        return products([derivations(f.arg, t, w) for t in range(s, T)])
    if isinstance(f, Next):
        return derivations(f.arg, s + 1, w) if s + 1 < T else []
    if isinstance(f, Until):
        return [d for t in range(s, T) for d in products(
            [derivations(f.right, t, w)] + [derivations(f.left, u, w) for u in range(s, t)])]
    if isinstance(f, Sequence):
        return [weight for weight, _ in placements(f.events, s, w)]
    raise AssertionError(f)


def placements(events, s, w):
    """(log weight, intervals) of every placement of the events on ordered intervals >= s."""
    if not events:
        return [(0.0, [])]
    out = []
    for a in range(s, w.T):
        for b in range(a, w.T):
            inner = products([derivations(events[0], t, w) for t in range(a, b + 1)])
            for rest_weight, rest in placements(events[1:], b + 1, w):
                out += [(d + rest_weight, [(a, b)] + rest) for d in inner]
    return out


def category_log(formula, probs, assignment):
    cats = dict.fromkeys(n for n in walk(formula) if isinstance(n, Category))
    pooled = probs.category.tolist()
    return sum(clog(pooled[assignment[c.var]][CATS.index(c.name)]) for c in cats)


def walk(f):
    yield f
    for name in ("args", "events"):
        for child in getattr(f, name, ()):
            yield from walk(child)
    for name in ("arg", "left", "right"):
        if hasattr(f, name):
            yield from walk(getattr(f, name))


def all_assignments(formula, tracks):
    from training.spec import variables

    names = variables(formula)
    for perm in itertools.permutations(range(tracks), len(names)):
        yield dict(zip(names, perm, strict=True))


def plus_all(values, tau):
    if tau is None:
        return max(values)
    top = max(values)
    return top + tau * math.log(sum(math.exp((v - top) / tau) for v in values))


def brute_value(formula, probs, tau):
    values = []
    for assignment in all_assignments(formula, probs.num_tracks):
        w = World(probs, assignment)
        base = category_log(formula, probs, assignment)
        values += [base + d for d in derivations(formula, 0, w)]
    return plus_all(values, tau) if values else None, len(values)


def brute_alignment(formula, probs, tau):
    """[K][T] lists of log values of proofs whose event i covers frame t (Sequence at top)."""
    from training.spec import split_sequence

    sequence, others = split_sequence(formula)
    frames, k = probs.num_frames, len(sequence.events)
    cells = [[[] for _ in range(frames)] for _ in range(k)]
    for assignment in all_assignments(formula, probs.num_tracks):
        w = World(probs, assignment)
        base = category_log(formula, probs, assignment)
        other = products([derivations(o, 0, w) for o in others])
        for weight, intervals in placements(sequence.events, 0, w):
            for i, (a, b) in enumerate(intervals):
                for t in range(a, b + 1):
                    cells[i][t] += [base + weight + o for o in other]
    return [[plus_all(c, tau) if c else None for c in row] for row in cells]


def semiring_for(tau):
    return logic.MaxProduct() if tau is None else logic.SmoothMaxProduct(tau)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("tau", [None, 0.5, 0.05])
@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_value_equals_brute_force(name, tau):
    formula = FORMULAS[name]
    for seed, (frames, tracks) in enumerate(SIZES):
        probs = random_probs(frames, tracks, seed, present=seed == 2)
        expected, count = brute_value(formula, probs, tau)
        result = logic.evaluate_spec(formula, probs, semiring_for(tau))
        if expected is None:  # no proof at all (e.g. Next on one frame, 3 vars on 2 tracks)
            assert result.prob.item() < 1e-100, (name, frames, tracks)
        else:
            assert result.log_prob.item() == pytest.approx(expected, rel=1e-9, abs=1e-9), (
                name, frames, tracks, count)


@pytest.mark.parametrize("tau", [None, 0.3])
@pytest.mark.parametrize("name", ["sequence3", "sequence_and_globally", "category_twice"])
def test_alignment_equals_brute_force(name, tau):
    formula = FORMULAS[name]
    for seed, (frames, tracks) in enumerate(SIZES[1:]):
        probs = random_probs(frames, tracks, 10 + seed, present=seed == 1)
        expected = brute_alignment(formula, probs, tau)
        got = logic.evaluate_spec(formula, probs, semiring_for(tau)).alignment_log
        assert got.shape == (len(expected), frames)
        for i, row in enumerate(expected):
            for t, value in enumerate(row):
                if value is None:  # no placement puts event i on frame t
                    assert got[i, t].item() < -1e6
                else:
                    assert got[i, t].item() == pytest.approx(value, rel=1e-9, abs=1e-9)


def test_max_alignment_peaks_at_the_spec_value():
    probs = random_probs(5, 3, 3)
    result = logic.evaluate_spec(FORMULAS["sequence3"], probs)
    peaks = result.alignment_log.max(dim=1).values
    assert torch.allclose(peaks, result.log_prob.expand(3))


def test_smooth_bounds_max_and_converges():
    formula = FORMULAS["sequence_and_globally"]
    probs = random_probs(5, 3, 4)
    exact = logic.evaluate_spec(formula, probs).log_prob.item()
    _, proofs = brute_value(formula, probs, None)
    gaps = []
    for tau in (1.0, 0.1, 0.01, 0.001):
        smooth = logic.evaluate_spec(formula, probs, logic.SmoothMaxProduct(tau)).log_prob.item()
        assert exact - 1e-12 <= smooth <= exact + tau * math.log(proofs) + 1e-12
        gaps.append(smooth - exact)
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-2


def test_certain_facts_give_boolean_answers():
    frames, tracks = 4, 2
    unary = torch.zeros(frames, tracks, 2, dtype=torch.float64)
    binary = torch.zeros(frames, tracks, tracks, 2, dtype=torch.float64)
    binary[0:2, 0, 1, 0] = 1.0  # track 0 left of track 1 on frames 0-1
    binary[2:4, 0, 1, 1] = 1.0  # then touching on frames 2-3
    category = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    probs = logic.PredicateProbs(category, unary, binary, CATS, UNARY, BINARY)
    ordered = And(Category("A", "circle"), Category("B", "square"),
                  Sequence(Binary("A", L, "B"), Binary("A", TOUCH, "B")))
    reversed_ = And(Category("A", "circle"), Category("B", "square"),
                    Sequence(Binary("A", TOUCH, "B"), Binary("A", L, "B")))
    wrong_category = And(Category("A", "square"), Sequence(Binary("A", L, "B")))
    result = logic.evaluate_spec(ordered, probs)
    assert result.prob.item() == 1.0
    assert result.best_assignment == {"A": 0, "B": 1}
    assert result.alignment[0].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0], abs=1e-9)
    assert logic.evaluate_spec(reversed_, probs).prob.item() < 1e-6
    assert logic.evaluate_spec(wrong_category, probs).prob.item() < 1e-6


@pytest.mark.parametrize("tau", [None, 0.2])
def test_gradcheck(tau):
    base = random_probs(3, 2, 5)
    formula = And(Category("A", "circle"),
                  Sequence(Binary("A", L, "B"), Not(Unary("A", "red"))),
                  Until(Unary("B", "blue"), Binary("B", TOUCH, "A")))

    def value(category, unary, binary):
        probs = logic.PredicateProbs(category, unary, binary, CATS, UNARY, BINARY)
        result = logic.evaluate_spec(formula, probs, semiring_for(tau))
        # Cells no placement reaches sit at LOG_ZERO (-1e9): finite differences are noise there.
        return result.log_prob, result.alignment_log[reachable]

    inputs = tuple((x * 0.8 + 0.1).requires_grad_() for x in
                   (base.category, base.unary, base.binary))
    reachable = logic.evaluate_spec(formula, base).alignment_log > -1e6
    assert reachable.sum() == 4  # event 1 cannot cover frame 0, event 2 not frame 2
    assert torch.autograd.gradcheck(value, inputs, eps=1e-6, atol=1e-5)


def test_max_product_gradient_reaches_only_the_best_proof():
    probs = random_probs(4, 3, 6)
    unary = probs.unary.clone().requires_grad_()
    formula = Finally(Unary("A", "red"))

    def grad(semiring):
        unary.grad = None
        p = logic.PredicateProbs(probs.category, unary, probs.binary, CATS, UNARY, BINARY)
        logic.evaluate_spec(formula, p, semiring).log_prob.backward()
        return unary.grad[..., 0]

    hard = grad(logic.MaxProduct())
    assert int((hard != 0).sum()) == 1
    assert hard.flatten().argmax() == probs.unary[..., 0].flatten().argmax()
    assert int((grad(logic.SmoothMaxProduct(0.5)) != 0).sum()) == unary[..., 0].numel()


def test_absent_tracks_make_atoms_false():
    probs = random_probs(3, 2, 7)
    probs.unary[:, 0, 0] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    probs.unary[:, 1, 0] = 0.0
    present = torch.ones(3, 2, dtype=torch.bool)
    formula = Finally(Unary("A", "red"))
    assert logic.evaluate_spec(formula, probs).prob.item() == 1.0
    present[2, 0] = False
    probs.present = present
    assert logic.evaluate_spec(formula, probs).prob.item() < 1e-6


def test_per_frame_categories_are_mean_pooled_over_present_frames():
    probs = random_probs(4, 2, 8, present=True)
    per_frame = torch.rand(4, 2, 2, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)
    weight = probs.present.double()[..., None]
    pooled = (per_frame * weight).sum(0) / weight.sum(0).clamp_min(1)
    formula = And(Category("A", "square"), Finally(Unary("A", "blue")))
    a = logic.evaluate_spec(formula, logic.PredicateProbs(
        per_frame, probs.unary, probs.binary, CATS, UNARY, BINARY, probs.present))
    b = logic.evaluate_spec(formula, logic.PredicateProbs(
        pooled, probs.unary, probs.binary, CATS, UNARY, BINARY, probs.present))
    assert a.log_prob.item() == pytest.approx(b.log_prob.item())


def test_more_variables_than_tracks_is_unsatisfiable_but_differentiable():
    probs = random_probs(3, 2, 9)
    unary = probs.unary.clone().requires_grad_()
    p = logic.PredicateProbs(probs.category, unary, probs.binary, CATS, UNARY, BINARY)
    result = logic.evaluate_spec(FORMULAS["three_vars"], p)
    assert result.prob.item() == 0.0
    assert result.alignment.shape == (2, 3)
    result.log_prob.backward()
    assert unary.grad is not None


def test_unknown_predicate_and_bad_shapes_are_named():
    probs = random_probs(2, 2, 0)
    with pytest.raises(KeyError, match="jumping"):
        logic.evaluate_spec(Finally(Unary("A", "jumping")), probs)
    with pytest.raises(ValueError, match="binary has shape"):
        logic.PredicateProbs(probs.category, probs.unary, probs.binary[:, :1], CATS, UNARY,
                             BINARY)


def test_name_maps_select_columns():
    probs = random_probs(4, 2, 12)
    formula = FORMULAS["sequence_and_globally"]
    expected = logic.evaluate_spec(formula, probs).log_prob
    # The same numbers behind a wider tensor, with names pointing at scattered columns.
    wide_unary = torch.zeros(4, 2, 5, dtype=torch.float64)
    wide_unary[..., [4, 1]] = probs.unary
    mapped = logic.PredicateProbs(probs.category, wide_unary, probs.binary,
                                  {"circle": 0, "square": 1}, {"red": 4, "blue": 1},
                                  dict(zip(BINARY, range(2), strict=True)))
    assert logic.evaluate_spec(formula, mapped).log_prob.item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="outside"):
        logic.PredicateProbs(probs.category, probs.unary, probs.binary, CATS, {"red": 7}, BINARY)
    with pytest.raises(ValueError, match="3 names"):
        logic.PredicateProbs(probs.category, probs.unary, probs.binary, CATS, UNARY + ["x"],
                             BINARY)


def reference_weights(location, video_length, encourage_prop=0.5):
    """Literal transcription of the reference's ``fg_loss.weight_fn``."""
    start, end = location
    mid = (start + end) / 2
    weights = []
    for s in range(video_length):
        d = end - start + encourage_prop
        weights.append(max(0, 1 - abs(s / video_length - mid) / d))
    return weights


@pytest.mark.parametrize("location", [(0.0, 0.25), (0.25, 0.75), (2 / 3, 1.0), (0.0, 1.0)])
@pytest.mark.parametrize("frames", [1, 7, 12, 20])
def test_temporal_prior_matches_reference(location, frames):
    prior = logic.temporal_prior(location, frames)
    assert prior.tolist() == pytest.approx(reference_weights(location, frames))
    assert (prior >= 0).all() and (prior <= 1).all()


def test_temporal_prior_is_triangular_around_the_location():
    early = logic.temporal_prior((0.0, 0.2), 20, encourage=0.1)
    late = logic.temporal_prior((0.8, 1.0), 20, encourage=0.1)
    assert early.argmax() < 5 < 15 < late.argmax()
    assert early[-1] == 0 and late[0] == 0
    peak = int(early.argmax())
    assert (early[peak:].diff() <= 0).all() and (early[: peak + 1].diff() >= 0).all()


def test_alignment_loss_prefers_alignment_at_the_expected_location():
    timing_early = EventTiming("short", 0.25, "early", (0.0, 0.25))
    event = Event(Unary("A", "red"), "", timing_early)
    spec = TemporalSpec(Sequence(Unary("A", "red")), (event,))
    frames = 8

    def loss_for(hot_frames, target):
        unary = torch.full((frames, 1, 2), 0.05, dtype=torch.float64)
        unary[hot_frames, 0, 0] = 0.95
        probs = logic.PredicateProbs(torch.ones(1, 2, dtype=torch.float64) / 2, unary,
                                     torch.zeros(frames, 1, 1, 2, dtype=torch.float64),
                                     CATS, UNARY, BINARY)
        result = logic.evaluate_spec(spec, probs)
        return logic.alignment_loss(result, spec.events, target).item()

    assert loss_for([0, 1], 1.0) < loss_for([6, 7], 1.0)
    assert loss_for([0, 1], 0.0) > loss_for([6, 7], 0.0)


def test_alignment_loss_is_an_average_over_derivable_frames_only():
    events = [Event(Unary("A", "red"), "", EventTiming("short", 0.5, "early", (0.0, 0.5))),
              Event(Unary("A", "blue"), "", EventTiming("short", 0.5, "late", (0.5, 1.0)))]
    spec = TemporalSpec(Sequence(*(e.formula for e in events)), tuple(events))
    probs = random_probs(4, 2, 13)
    unary = probs.unary.clone().requires_grad_()
    result = logic.evaluate_spec(spec, logic.PredicateProbs(
        probs.category, unary, probs.binary, CATS, UNARY, BINARY))
    assert result.alignment_log[1, 0] < -1e6 and result.alignment_log[0, 3] < -1e6
    loss = logic.alignment_loss(result, events, 1.0)
    reachable = result.alignment_log > -1e6
    worst = -result.alignment_log[reachable].min()
    assert 0 < loss.item() <= worst.item() + 1e-9
    loss.backward()
    assert unary.grad.abs().sum() > 0


def test_alignment_distribution_sums_to_one():
    result = logic.evaluate_spec(FORMULAS["sequence3"], random_probs(5, 3, 11))
    dist = logic.alignment_distribution(result.alignment_log)
    assert torch.allclose(dist.sum(-1), torch.ones(3, dtype=torch.float64))
