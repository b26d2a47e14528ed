"""The ShapesWorld caption language: vocabulary and phrases shared by the caption generator
(:mod:`training.synth_captions`) and the rule-based parser (:mod:`training.caption_rules`).

A caption is a sequence of clauses ``SUBJECT PREDICATE [OBJECT] [TAIL]`` joined by temporal
connectives ("then", "after that", "First, ... Next, ..."), or a "Before X, Y" / "After X, Y"
sentence. Mentions are "the red circle", "the circle", "the red one", "it", "they", "the two".
"""

from __future__ import annotations

# One vocabulary with the renderer: plans draw (category, colour) pairs by index.
from sgclip_ros.sim.shapes_scene import CATEGORIES, COLOURS  # noqa: F401 (re-exported)

RELATIONS = ("left of", "right of", "above", "below", "touching")
AXES = {True: ("left of", "right of"), False: ("above", "below")}  # by horizontal motion

STATIVE = {  # "<subject> PHRASE <object>": the relation holds
    "left of": ("is left of", "is to the left of", "is on the left of"),
    "right of": ("is right of", "is to the right of", "is on the right of"),
    "above": ("is above", "is over", "is higher than"),
    "below": ("is below", "is under", "is beneath", "is lower than"),
}
MOTION = {  # "<subject> PHRASE <object>": it moves so that the relation holds
    "left of": ("moves to the left of", "ends up left of", "gets to the left of"),
    "right of": ("moves to the right of", "ends up right of", "gets to the right of"),
    "above": ("moves above", "ends up above", "rises above"),
    "below": ("moves below", "ends up below", "drops below"),
}
LASTING = {  # "<subject> stays|remains PHRASE <object>": the relation holds the whole clip
    relation: tuple(p.removeprefix("is ") for p in phrases) for relation, phrases in STATIVE.items()
}
TOUCH = ("touches", "is touching", "bumps into", "makes contact with", "comes into contact with")
APART = ("moves away from", "separates from", "no longer touches", "pulls away from",
         "drifts away from")
TOWARD = ("moves toward", "heads toward", "moves closer to")
APPROACH = "approaches"
SIDES = {"left of": "from the left", "right of": "from the right", "above": "from above",
         "below": "from below"}
TOWARD_TAILS = ("and moves toward it", "and heads toward it", ", moving toward it")
PAIR_SUBJECTS = ("they", "the two shapes", "the two")
PAIR_APART = ("separate", "move apart", "drift apart")
LASTING_VERBS = ("stays", "remains")
LASTING_MARKERS = ("the whole time", "throughout the clip", "all along", "throughout")
LASTING_PREFIXES = ("throughout the clip,", "all along,")
CONNECTIVES = (", then ", ". Then ", ", and then ", ". After that, ", ", and later ",
               ". Later, ")
SEQUENCE_MARKERS = ("first", "next", "then", "after that", "later", "afterwards", "finally")
DURATION_WORDS = {"briefly": "short", "for a moment": "short", "for a while": "medium",
                  "for a long time": "long"}
LOCATION_WORDS = {"at first": "early", "initially": "early", "at the start": "early",
                  "in the end": "late", "at the end": "late", "eventually": "late",
                  "finally": "late"}
