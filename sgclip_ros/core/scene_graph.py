"""The scene-graph dataclasses shared by the predictor, the converters and the tools.

ROS-free: times are integer nanoseconds, boxes are pixel floats. The ROS message
conversion lives in ``sgclip_ros.ros.conversions``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


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
    """One object seen in one frame of the window."""

    frame_index: int
    box: Box
    confidence: float = 1.0


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
                observations=[
                    Observation(ob["frame_index"], Box(**ob["box"]), ob.get("confidence", 1.0))
                    for ob in o.get("observations", [])
                ],
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
