"""Crops must equal the reference (LASER numpy + OpenCV code) bit for bit; preprocessing shapes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from sgclip_ros.core.crops import add_weighted_lut, object_crops, pair_crops, push_lut
from sgclip_ros.core.model_config import PreprocessConfig
from sgclip_ros.core.preprocess import output_geometry, preprocess_crops

# ---------------------------------------------------------------- reference, per object
# Written from the reference's description: numpy + cv2, one object/pair at a time.


def ref_single(img: np.ndarray, mask: np.ndarray, white_alpha: float = 0.8) -> np.ndarray:
    outside = ~mask.astype(bool)[:, :, None]
    white = np.full(img.shape, 255, dtype=np.uint8)
    masked_white = np.where(outside, white, img)
    return cv2.addWeighted(img, 1 - white_alpha, masked_white, white_alpha, 0)


def ref_pair(img, subj_mask, obj_mask, alpha=0.5, white_alpha=0.8) -> np.ndarray:
    subj = subj_mask.astype(bool)[:, :, None]
    obj = obj_mask.astype(bool)[:, :, None]
    outside = ~(subj | obj)
    c0, c1, c2 = cv2.split(img)
    c2 = np.where(subj[:, :, 0], np.clip(c2 + (255 - c2) * alpha, 0, 255), c2).astype(np.uint8)
    c0 = np.where(obj[:, :, 0], np.clip(c0 + (255 - c0) * alpha, 0, 255), c0).astype(np.uint8)
    out = cv2.merge((c0, c1, c2))
    white = np.full_like(out, 255)
    return np.where(outside, cv2.addWeighted(out, 1 - white_alpha, white, white_alpha, 0), out)


def ref_crop(img: np.ndarray, boxes: list[list[int]]) -> np.ndarray:
    x1 = min(b[0] for b in boxes)
    y1 = min(b[1] for b in boxes)
    x2 = max(b[2] for b in boxes)
    y2 = max(b[3] for b in boxes)
    return img[y1:y2, x1:x2]


def box_mask(box: list[int], h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[box[1] : box[3], box[0] : box[2]] = True
    return m


# ---------------------------------------------------------------- fixtures


def random_scene(seed: int, h: int = 47, w: int = 61, n: int = 7):
    """Frame, boxes (some touching every edge, some 1 px), masks (blobs, noise, empty)."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = [[0, 0, w, h], [0, 5, 9, h], [w - 1, 0, w, 1], [3, h - 2, w, h]]
    while len(boxes) < n:
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        boxes.append([x1, y1, int(rng.integers(x1 + 1, w + 1)), int(rng.integers(y1 + 1, h + 1))])
    masks = rng.random((n, h, w)) < 0.5
    yy, xx = np.mgrid[:h, :w]
    masks[1] = (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 3) ** 2  # a blob leaking out of box
    masks[2] = False  # an empty mask: everything whitened
    return frame, np.array(boxes, dtype=np.int64), masks


def as_torch(frame, boxes, masks=None):
    t_masks = None if masks is None else torch.from_numpy(masks)
    return torch.from_numpy(frame), torch.from_numpy(boxes), t_masks


# ---------------------------------------------------------------- lookup tables vs OpenCV


@pytest.mark.parametrize("white_alpha", [0.8, 0.5, 0.3, 0.77])
def test_add_weighted_lut_matches_opencv_for_every_value(white_alpha):
    # 1x256 hits OpenCV's SIMD body and its scalar tail; a wide image the SIMD body only.
    values = np.arange(256, dtype=np.uint8)
    for row in (values, np.tile(values, 37)):
        img = np.ascontiguousarray(row.reshape(1, -1, 1).repeat(3, 2))
        white = np.full_like(img, 255)
        want_white = cv2.addWeighted(img, 1 - white_alpha, white, white_alpha, 0)
        want_self = cv2.addWeighted(img, 1 - white_alpha, img, white_alpha, 0)
        lut_w = add_weighted_lut(1 - white_alpha, white_alpha, 255).numpy()
        lut_s = add_weighted_lut(1 - white_alpha, white_alpha, None).numpy()
        np.testing.assert_array_equal(lut_w[img], want_white)
        np.testing.assert_array_equal(lut_s[img], want_self)


def test_inside_mask_blend_is_identity_and_white_blend_is_not():
    values = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(add_weighted_lut(0.2, 0.8, None), values)
    white = add_weighted_lut(0.2, 0.8, 255)
    assert int(white[0]) == 204 and int(white[255]) == 255
    assert bool((white[:255] > values[:255]).all())


def test_push_lut_is_numpy_astype_truncation():
    c = np.arange(256, dtype=np.uint8)
    want = np.clip(c + (255 - c) * 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(push_lut(0.5).numpy(), want)
    assert int(push_lut(0.5)[0]) == 127  # 127.5 truncates, it does not round


# ---------------------------------------------------------------- object crops


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_object_crops_bit_exact_with_masks(seed):
    frame, boxes, masks = random_scene(seed)
    got = object_crops(*as_torch(frame, boxes, masks))
    assert len(got) == len(boxes)
    for b, m, crop in zip(boxes.tolist(), masks, got, strict=True):
        want = ref_crop(ref_single(frame, m), [b])
        assert crop.dtype == torch.uint8 and tuple(crop.shape) == want.shape
        np.testing.assert_array_equal(crop.numpy(), want)


def test_object_crops_without_masks_use_the_box():
    frame, boxes, _ = random_scene(3)
    got = object_crops(*as_torch(frame, boxes))
    h, w = frame.shape[:2]
    for b, crop in zip(boxes.tolist(), got, strict=True):
        want = ref_crop(ref_single(frame, box_mask(b, h, w)), [b])
        np.testing.assert_array_equal(crop.numpy(), want)
        np.testing.assert_array_equal(crop.numpy(), ref_crop(frame, [b]))


def test_object_crops_mixed_mask_list():
    frame, boxes, masks = random_scene(4)
    h, w = frame.shape[:2]
    mixed = [None if i % 2 else torch.from_numpy(m) for i, m in enumerate(masks)]
    got = object_crops(torch.from_numpy(frame), torch.from_numpy(boxes), mixed)
    for i, (b, crop) in enumerate(zip(boxes.tolist(), got, strict=True)):
        mask = box_mask(b, h, w) if i % 2 else masks[i]
        np.testing.assert_array_equal(crop.numpy(), ref_crop(ref_single(frame, mask), [b]))


def test_object_crops_do_not_modify_frame():
    frame, boxes, masks = random_scene(5)
    t_frame = torch.from_numpy(frame.copy())
    crops = object_crops(t_frame, torch.from_numpy(boxes), torch.from_numpy(masks))
    crops[0].fill_(7)  # crops own their memory
    np.testing.assert_array_equal(t_frame.numpy(), frame)


# ---------------------------------------------------------------- pair crops


def scene_pairs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pairs = [(0, 1), (1, 0), (2, 3), (3, 3), (n - 1, 0)]
    pairs += [tuple(rng.integers(0, n, 2)) for _ in range(6)]
    return np.array(pairs, dtype=np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_crops_bit_exact_with_masks(seed):
    frame, boxes, masks = random_scene(seed)
    pairs = scene_pairs(len(boxes), seed)
    got = pair_crops(*as_torch(frame, boxes, masks), torch.from_numpy(pairs))
    assert len(got) == len(pairs)
    for (s, o), crop in zip(pairs.tolist(), got, strict=True):
        want = ref_crop(ref_pair(frame, masks[s], masks[o]), [boxes[s].tolist(), boxes[o].tolist()])
        assert tuple(crop.shape) == want.shape
        np.testing.assert_array_equal(crop.numpy(), want)


def test_pair_crops_without_masks_use_boxes():
    frame, boxes, _ = random_scene(6)
    h, w = frame.shape[:2]
    pairs = scene_pairs(len(boxes), 6)
    got = pair_crops(*as_torch(frame, boxes), torch.from_numpy(pairs))
    for (s, o), crop in zip(pairs.tolist(), got, strict=True):
        bs, bo = boxes[s].tolist(), boxes[o].tolist()
        want = ref_crop(ref_pair(frame, box_mask(bs, h, w), box_mask(bo, h, w)), [bs, bo])
        np.testing.assert_array_equal(crop.numpy(), want)


def test_pair_colours_subject_channel2_object_channel0():
    frame = np.full((4, 6, 3), 100, dtype=np.uint8)
    boxes = torch.tensor([[0, 0, 2, 4], [4, 0, 6, 4]])
    (crop,) = pair_crops(torch.from_numpy(frame), boxes, None, torch.tensor([[0, 1]]))
    assert crop[0, 0].tolist() == [100, 100, 177]  # subject: channel 2 -> (255 + 100) // 2
    assert crop[0, 5].tolist() == [177, 100, 100]  # object: channel 0
    white = int(add_weighted_lut(0.2, 0.8, 255)[100])
    assert crop[0, 3].tolist() == [white] * 3  # between the boxes: whitened


def test_empty_inputs_and_validation():
    frame = torch.zeros((5, 5, 3), dtype=torch.uint8)
    assert object_crops(frame, torch.zeros((0, 4), dtype=torch.long)) == []
    boxes = torch.tensor([[0, 0, 5, 5]])
    assert pair_crops(frame, boxes, None, torch.zeros((0, 2), dtype=torch.long)) == []
    with pytest.raises(ValueError, match="outside"):
        object_crops(frame, torch.tensor([[0, 0, 6, 5]]))
    with pytest.raises(ValueError, match="empty"):
        object_crops(frame, torch.tensor([[2, 0, 2, 5]]))
    with pytest.raises(ValueError, match="shape"):
        object_crops(frame, boxes, torch.zeros((1, 4, 5), dtype=torch.bool))
    with pytest.raises(ValueError, match="pair indices"):
        pair_crops(frame, boxes, None, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="uint8"):
        object_crops(frame.float(), boxes)


# ---------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("size", [(1, 1), (1, 500), (500, 1), (3, 40), (47, 61), (32, 32)])
def test_preprocess_shapes_and_dtype(size):
    cfg = PreprocessConfig(image_size=32)
    crop = torch.randint(0, 256, (*size, 3), dtype=torch.uint8)
    out = preprocess_crops([crop, crop], cfg)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], out[1])


def test_preprocess_constant_crop_gives_normalised_constant():
    cfg = PreprocessConfig(image_size=24)
    crop = torch.empty((7, 19, 3), dtype=torch.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 10, 128, 250
    out = preprocess_crops([crop], cfg)[0]
    for c, v in enumerate((10, 128, 250)):
        want = (v / 255 - cfg.mean[c]) / cfg.std[c]
        assert torch.allclose(out[c], torch.full_like(out[c], want), atol=1e-5)


def test_preprocess_is_not_a_squash():
    # A left-dark/right-bright wide crop: the center crop keeps only the middle; a squash would not.
    cfg = PreprocessConfig(image_size=16)
    crop = torch.zeros((16, 64, 3), dtype=torch.uint8)
    crop[:, :24] = 0
    crop[:, 24:40] = 200
    crop[:, 40:] = 255
    assert output_geometry(16, 64, cfg) == (16, 64, 0, 24)
    out = preprocess_crops([crop], cfg)[0]
    want = (200 / 255 - cfg.mean[0]) / cfg.std[0]
    assert torch.allclose(out[0, :, 4:12], torch.full((16, 8), want), atol=1e-5)
    squashed = preprocess_crops([crop], PreprocessConfig(image_size=16, resize_mode="squash"))[0]
    assert squashed[0, 0, 0] < out[0, 0, 0]  # the squash keeps the dark left part


def test_preprocess_empty_list_and_bad_input():
    cfg = PreprocessConfig(image_size=8)
    assert preprocess_crops([], cfg).shape == (0, 3, 8, 8)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_crops([torch.zeros((4, 4, 3))], cfg)
    with pytest.raises(ValueError, match="empty"):
        preprocess_crops([torch.zeros((0, 4, 3), dtype=torch.uint8)], cfg)
