"""The scene-graph dataclasses shared by the predictor, the converters and the tools.

ROS-free: times are integer nanoseconds, boxes are pixel floats, positions are metres in the
camera's optical frame (x right, y down, z forward). The ROS message conversion lives in
``sgclip_ros.ros.conversions``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Box:
    """Axis-aligned pixel box; (x1, y1) inclusive top-left, (x2, y2) exclusive bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass
class Observation:
    """One object seen in one frame of the window.

    With aligned depth: ``position`` is the centre of the object's visible surface and
    ``extent_min``/``extent_max`` its axis-aligned bounds (m, optical frame); ``depth_confidence``
    is the share of its pixels with valid depth. All None (0.0) without depth."""

    frame_index: int
    box: Box
    confidence: float = 1.0
    position: Vec3 | None = None
    extent_min: Vec3 | None = None
    extent_max: Vec3 | None = None
    depth_confidence: float = 0.0

    @property
    def has_position(self) -> bool:
        return self.position is not None


@dataclass
class LabelProb:
    label: str
    score: float


@dataclass
class ObjectNode:
    """A tracked object: its category distribution and where it was seen."""

    id: str
    label: str
    score: float
    labels: list[LabelProb] = field(default_factory=list)
    detector_label: str = ""
    observations: list[Observation] = field(default_factory=list)
    # Newest observed position (m, optical frame) and the velocity over the window (m/s);
    # None without depth (velocity: also with fewer than two positioned frames).
    position: Vec3 | None = None
    velocity: Vec3 | None = None

    @property
    def has_position(self) -> bool:
        return self.position is not None

    def last_positioned(self) -> Observation | None:
        """The newest observation that has a position."""
        return next((ob for ob in reversed(self.observations) if ob.has_position), None)


@dataclass
class AttributeFact:
    """A unary predicate of one object over the window."""

    object_id: str
    attribute: str
    score: float
    first_frame: int
    last_frame: int
    frame_indices: list[int] = field(default_factory=list)
    frame_scores: list[float] = field(default_factory=list)


@dataclass
class RelationFact:
    """A binary predicate between an ordered (subject, object) pair over the window."""

    subject_id: str
    predicate: str
    object_id: str
    score: float
    first_frame: int
    last_frame: int
    frame_indices: list[int] = field(default_factory=list)
    frame_scores: list[float] = field(default_factory=list)


@dataclass
class SceneGraph:
    """Scene graph of one window of one camera. ``stamp_ns`` is the newest frame's stamp."""

    stamp_ns: int
    frame_id: str
    camera: str
    concepts_id: str
    frame_stamps_ns: list[int] = field(default_factory=list)
    objects: list[ObjectNode] = field(default_factory=list)
    attributes: list[AttributeFact] = field(default_factory=list)
    relations: list[RelationFact] = field(default_factory=list)
    inference_ms: float = 0.0
    backend: str = ""

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable)."""
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> SceneGraph:
        """Inverse of :meth:`to_dict`."""
        objects = [
            ObjectNode(
                id=o["id"],
                label=o["label"],
                score=o["score"],
                labels=[LabelProb(**lp) for lp in o.get("labels", [])],
                detector_label=o.get("detector_label", ""),
                observations=[_observation_from_dict(ob) for ob in o.get("observations", [])],
                position=_vec3(o.get("position")),
                velocity=_vec3(o.get("velocity")),
            )
            for o in data.get("objects", [])
        ]
        return cls(
            stamp_ns=data["stamp_ns"],
            frame_id=data["frame_id"],
            camera=data["camera"],
            concepts_id=data["concepts_id"],
            frame_stamps_ns=list(data.get("frame_stamps_ns", [])),
            objects=objects,
            attributes=[AttributeFact(**a) for a in data.get("attributes", [])],
            relations=[RelationFact(**r) for r in data.get("relations", [])],
            inference_ms=data.get("inference_ms", 0.0),
            backend=data.get("backend", ""),
        )

    def object(self, object_id: str) -> ObjectNode | None:
        return next((o for o in self.objects if o.id == object_id), None)


def _vec3(value) -> Vec3 | None:
    return None if value is None else tuple(float(v) for v in value)


def _observation_from_dict(ob: dict) -> Observation:
    """One observation; dicts written before positions existed have none."""
    return Observation(
        ob["frame_index"],
        Box(**ob["box"]),
        ob.get("confidence", 1.0),
        position=_vec3(ob.get("position")),
        extent_min=_vec3(ob.get("extent_min")),
        extent_max=_vec3(ob.get("extent_max")),
        depth_confidence=ob.get("depth_confidence", 0.0),
    )
