"""The reference SGClip forward, done faithfully, as the baseline of bench.core.

For every window: crop every object and every ordered pair of every frame with numpy/OpenCV as
the reference's `extract_single_object` / `extract_object_subject` do, preprocess each crop with
Hugging Face's `CLIPImageProcessor`, encode the keyword lists, and encode all crops in one batch
per tower (category and unary towers on object crops, binary tower on pair crops). Nothing is
cached across windows, as in the reference, whose forward takes a whole clip.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from transformers import CLIPImageProcessor

from sgclip_ros.core.backend import EncoderBackend


def whiten_outside(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pixels outside ``mask`` become 0.2*img + 0.8*255 (cv2.addWeighted rounding)."""
    white = np.full_like(img, 255)
    blended = cv2.addWeighted(img, 0.2, white, 0.8, 0)
    out = img.copy()
    out[~mask] = blended[~mask]
    return out


def extract_single_object(img: np.ndarray, mask: np.ndarray, box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return whiten_outside(img, mask)[y1:y2, x1:x2]


def extract_object_subject(img, subject_mask, object_mask, subject_box, object_box):
    """Subject tinted on channel 2, object on channel 0, background whitened, union box."""
    out = img.copy()
    for channel, mask in ((2, subject_mask), (0, object_mask)):
        c = out[..., channel][mask].astype(np.float64)
        out[..., channel][mask] = (c + (255 - c) * 0.5).astype(np.uint8)
    out = whiten_outside(out, subject_mask | object_mask)
    x1 = min(subject_box[0], object_box[0])
    y1 = min(subject_box[1], object_box[1])
    x2 = max(subject_box[2], object_box[2])
    y2 = max(subject_box[3], object_box[3])
    return out[y1:y2, x1:x2]


def box_mask(shape, box) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = True
    return mask


class ReferenceForward:
    """Per-window forward of the reference over a backend's towers."""

    def __init__(self, backend: EncoderBackend, categories, unary, binary):
        self.backend = backend
        pre = backend.preprocess
        size = pre.image_size
        self.processor = CLIPImageProcessor(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            image_mean=list(pre.mean),
            image_std=list(pre.std),
            do_convert_rgb=False,
        )
        self.lists = (list(categories), list(unary), list(binary))

    def window(self, frames: list[np.ndarray], boxes: list[list[tuple]]) -> dict[str, torch.Tensor]:
        """Score one window of frames with their integer boxes; returns the logits per role."""
        objects, pairs = [], []
        for img, frame_boxes in zip(frames, boxes):
            masks = [box_mask(img.shape, b) for b in frame_boxes]
            for b, m in zip(frame_boxes, masks):
                objects.append(extract_single_object(img, m, b))
            for s in range(len(frame_boxes)):
                for o in range(len(frame_boxes)):
                    if s != o:
                        pairs.append(
                            extract_object_subject(
                                img, masks[s], masks[o], frame_boxes[s], frame_boxes[o]
                            )
                        )
        obj_pixels = self._pixels(objects)
        pair_pixels = self._pixels(pairs)
        out = {}
        for role, tower, pixels, texts in (
            ("category", 0, obj_pixels, self.lists[0]),
            ("unary", min(1, self.backend.towers - 1), obj_pixels, self.lists[1]),
            ("binary", min(2, self.backend.towers - 1), pair_pixels, self.lists[2]),
        ):
            text = self.backend.encode_texts(tower, self.backend.tokenize(texts))
            image = self.backend.encode_images(tower, pixels)
            out[role] = self.backend.logit_scale(tower) * image @ text.T
        return out

    def _pixels(self, crops: list[np.ndarray]) -> torch.Tensor:
        batch = self.processor(images=crops, return_tensors="pt")
        return batch["pixel_values"]
