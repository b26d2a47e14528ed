"""Dataset loading: VidOR folders (PNG frames and .mp4), manifests, sampling, tracks, errors."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from training import data, synth
from training.caption_grammar import CATEGORIES, COLOURS, RELATIONS
from training.video_io import VideoFrames, VideoReadError, sample_frame_indices


@pytest.fixture(scope="module")
def png_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("png")
    synth.generate_dataset(root, videos=4, seed=21, frames=8, fps=2.0)
    return root


@pytest.fixture(scope="module")
def mp4_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp4")
    synth.generate_dataset(root, videos=2, seed=21, frames=8, fps=4.0, fmt="mp4")
    return root


def copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return dst


def first_annotation(root):
    path = sorted((root / "annotations").glob("*.json"))[0]
    return path, json.loads(path.read_text())


def test_load_vidor_png_dataset(png_root):
    videos = data.load_vidor_dataset(png_root)
    assert [v.video_id for v in videos] == sorted(v.video_id for v in videos)
    assert len(videos) == 4
    for index, video in enumerate(videos):
        clip = synth.render_clip(seed=21, index=index, frames=8, fps=2.0)
        assert video.video_id == clip.video_id and video.caption == clip.annotation["caption"]
        assert video.frame_count == 8 and video.fps == 2.0
        assert [o.category for o in video.objects] == [
            o["category"] for o in clip.annotation["subject/objects"]]
        frames = video.frames()
        assert len(frames) == 8
        assert all(np.array_equal(a, b) for a, b in zip(frames, clip.frames, strict=True))


def test_png_frames_are_sampled_to_the_target_fps(png_root):
    video = data.load_vidor_dataset(png_root)[0]
    clip = synth.render_clip(seed=21, index=0, frames=8, fps=2.0)
    frames = video.frames(target_fps=1.0)
    assert frames.frame_indices == [0, 2, 4, 6]
    assert np.array_equal(frames[1], clip.frames[2])
    assert video.frames(max_frames=3).frame_indices == [0, 4, 7]


def test_load_vidor_mp4_dataset(mp4_root):
    videos = data.load_vidor_dataset(mp4_root)
    for index, video in enumerate(videos):
        assert video.video_path.suffix == ".mp4"
        clip = synth.render_clip(seed=21, index=index, frames=8, fps=4.0)
        frames = video.frames(target_fps=2.0)
        assert frames.source_fps == 4.0 and frames.frame_indices == [0, 2, 4, 6]
        decoded = frames.read_all()
        assert len(decoded) == 4 and decoded[0].shape == clip.frames[0].shape
        for got, t in zip(decoded, frames.frame_indices, strict=True):
            error = np.abs(got.astype(int) - clip.frames[t].astype(int)).mean()
            assert error < 8  # lossy codec, same picture
        other = np.abs(decoded[0].astype(int) - clip.frames[6].astype(int)).mean()
        assert other > np.abs(decoded[0].astype(int) - clip.frames[0].astype(int)).mean()


def test_avi_file_and_container_fps(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for value in range(0, 200, 20):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    frames = VideoFrames(path, target_fps=5.0)
    assert frames.source_fps == pytest.approx(10.0) and frames.frame_indices == [0, 2, 4, 6, 8]
    assert [round(f.mean() / 20) for f in frames] == [0, 2, 4, 6, 8]


def test_unreadable_videos_are_named(tmp_path):
    bogus = tmp_path / "broken.mp4"
    bogus.write_bytes(b"not a video at all")
    with pytest.raises(VideoReadError, match="broken.mp4"):
        VideoFrames(bogus)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no image frames"):
        VideoFrames(tmp_path / "empty")
    with pytest.raises(VideoReadError, match="no such"):
        VideoFrames(tmp_path / "missing")


def test_frame_folders_sort_numerically(tmp_path):
    for index in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"f{index}.jpg"), np.full((8, 8, 3), index * 20, np.uint8))
    frames = VideoFrames(tmp_path)
    assert [int(round(f.mean() / 20)) for f in frames] == [1, 2, 10]


@pytest.mark.parametrize(("count", "src", "dst", "cap", "expected"), [
    (10, 30.0, 10.0, None, [0, 3, 6, 9]),
    (10, 30.0, 7.0, None, [0, 4, 8]),  # int(30/7) = 4, as the reference
    (5, 1.0, 2.0, None, [0, 1, 2, 3, 4]),  # no upsampling
    (10, None, 1.0, 4, [0, 3, 6, 9]),
    (3, 1.0, 1.0, 10, [0, 1, 2]),
])
def test_sample_frame_indices(count, src, dst, cap, expected):
    assert sample_frame_indices(count, src, dst, cap) == expected


def test_weak_tracks_have_no_labels_supervised_tracks_do(png_root):
    video = data.load_vidor_dataset(png_root)[1]
    weak = data.frame_tracks(video, [0, 3, 5])
    strong = data.frame_tracks(video, [0, 3, 5], with_labels=True)
    assert weak.categories is None
    assert strong.categories == [o.category for o in video.objects]
    assert np.array_equal(weak.boxes, strong.boxes) and weak.present.all()
    box = video.trajectories[3][0]
    assert tuple(weak.boxes[1, weak.track_ids.index(box.tid)]) == box.box


def test_ground_truth_tensors_match_the_instances(png_root):
    video = data.load_vidor_dataset(png_root)[2]
    frames = [1, 2, 6]
    gt = data.ground_truth(video, frames, CATEGORIES, COLOURS, RELATIONS)
    assert gt.category.sum(1).tolist() == [1.0] * len(video.objects)
    assert gt.unary.sum(-1).eq(1).all()  # one colour per shape per frame
    expected = {(t, r.subject_tid, r.object_tid, RELATIONS.index(r.predicate))
                for r in video.relations for t, fid in enumerate(frames)
                if r.begin_fid <= fid < r.end_fid}
    assert {tuple(i) for i in gt.binary.nonzero().tolist()} == expected
    probs = gt.predicate_probs()
    assert probs.num_frames == 3 and probs.num_tracks == len(video.objects)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda a: a.pop("video_id"), r"\$\.video_id: missing"),
    (lambda a: a.update(fps="fast"), r"\$\.fps: expected a number"),
    (lambda a: a["trajectories"][2][0]["bbox"].pop("xmax"), r"trajectories\[2\]\[0\]\.bbox\.xmax"),
    (lambda a: a["trajectories"][1][0].update(tid=99), r"trajectories\[1\]\[0\]\.tid: unknown"),
    (lambda a: a["relation_instances"][0].update(end_fid=0), r"relation_instances\[0\]: need"),
    (lambda a: a["subject/objects"].append(dict(a["subject/objects"][0])), "duplicate tid"),
    (lambda a: a["unary_instances"][0].update(tid="x"), r"unary_instances\[0\]\.tid"),
    (lambda a: a.update(video_path="frames/nope"), "does not exist"),
    (lambda a: a.update(trajectories={}), r"\$\.trajectories: expected a list"),
])
def test_malformed_annotations_name_file_and_field(png_root, tmp_path, edit, message):
    root = copy_dataset(png_root, tmp_path / "copy")
    path, annotation = first_annotation(root)
    edit(annotation)
    path.write_text(json.dumps(annotation))
    with pytest.raises(data.AnnotationError, match=message) as info:
        data.load_vidor_dataset(root)
    assert path.name in str(info.value)


def test_invalid_json_and_missing_folder(png_root, tmp_path):
    root = copy_dataset(png_root, tmp_path / "copy")
    path, _ = first_annotation(root)
    path.write_text("{not json")
    with pytest.raises(data.AnnotationError, match=path.name):
        data.load_vidor_dataset(root)
    with pytest.raises(data.AnnotationError, match="no annotations/ folder"):
        data.load_vidor_dataset(tmp_path / "nowhere")


def test_manifest_with_and_without_tracks(png_root, mp4_root, tmp_path):
    png = data.load_vidor_dataset(png_root)[0]
    mp4 = data.load_vidor_dataset(mp4_root)[0]
    tracks = [[{"tid": b.tid + 7, "bbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), b.box,
                                                   strict=True))} for b in frame]
              for frame in png.trajectories]
    manifest = tmp_path / "own.jsonl"
    lines = [{"video_path": str(png.video_path), "caption": "a red circle moves",
              "tracks": tracks},
             {"video_path": str(mp4.video_path), "caption": "another", "video_id": "v2",
              "fps": 4.0}]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    videos = data.load_dataset(manifest)
    assert [v.caption for v in videos] == ["a red circle moves", "another"]
    assert videos[1].video_id == "v2" and videos[1].trajectories is None
    assert [o.tid for o in videos[0].objects] == [o.tid + 7 for o in png.objects]
    assert all(o.category is None for o in videos[0].objects)
    weak = data.frame_tracks(videos[0], [0, 1])
    assert weak.categories is None and weak.present.all()
    assert len(videos[1].frames(target_fps=2.0)) == 4
    with pytest.raises(data.AnnotationError, match="has no tracks"):
        data.frame_tracks(videos[1], [0])


def test_manifest_errors_name_the_line(tmp_path):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"video_path": "x.mp4", "caption": "c"}\n')
    with pytest.raises(data.AnnotationError, match=r"bad\.jsonl:1: \$\.video_path"):
        data.load_manifest_jsonl(manifest)
    (tmp_path / "x.mp4").write_bytes(b"")
    manifest.write_text('{"video_path": "x.mp4", "caption": "c"}\n{"video_path": 3}\n')
    with pytest.raises(data.AnnotationError, match=r"bad\.jsonl:2: \$\.video_path: expected"):
        data.load_manifest_jsonl(manifest)
    manifest.write_text("[1, 2]\n")
    with pytest.raises(data.AnnotationError, match=r"bad\.jsonl:1: \$: expected an object"):
        data.load_manifest_jsonl(manifest)
