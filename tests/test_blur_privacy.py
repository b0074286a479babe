"""Privacy-grade blur (issue 13): tracks hold missed faces, the independent audit catches what the blur's
detector never saw, recall-first geometry, modes, sidecar, audio, several inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toolchain.errors import FbtoolError

ONE_FACE = "head-pose-face-detection-female.gif"  # one large face in every frame
TWO_FACES = "head-pose-face-detection-female-and-male.gif"


@pytest.fixture(scope="module")
def host_engine(recipe):
    from toolchain.blur.engines import make_engine

    return make_engine(recipe, "torch", "cpu", batch=2)


def _drop_detections(monkeypatch, keep):
    """A detector double: the real post-processing, then only the faces `keep(frame_index, box)` allows."""
    import toolchain.blur.pipeline.stages as st

    real = st.host_post

    def double(recipe):
        inner = real(recipe)

        def fn(batches):
            for b in inner(batches):
                b.dets = [d.take([j for j, box in enumerate(d.boxes) if keep(i, box)]) for i, d in zip(b.index, b.dets)]
                yield b
        return fn
    monkeypatch.setattr(st, "host_post", double)


def _face_drops(recipe, clip, out, n):
    """Per frame, the detail drop of every face the reference finds in the original (the proof's measure)."""
    from toolchain.blur.proof import ProofReport, check_frame
    from toolchain.detector import detect_batch
    from toolchain.media import read_frames
    from toolchain.runners import TorchRunner

    runner = TorchRunner(recipe)
    drops = []
    for a, b in zip(read_frames(clip, max_frames=n), read_frames(out)):
        rep = ProofReport()
        h, w = b.shape[:2]
        check_frame(rep, 0, a[:h, :w], b, detect_batch([a], recipe, runner)[0])
        drops.append([f["drop"] for f in rep.faces])
    return drops


def _sidecar(out):
    return {f["frame"]: f["faces"] for f in json.loads(out.with_name(out.stem + ".faces.json").read_text())["frames"]}


def test_tracks_fill_gaps_both_ways_and_hold_after_the_last_detection(recipe, host_engine, tmp_path, monkeypatch):
    """The detector double misses the face in frames 0-1 (before its first detection), 4-6 (a gap) and
    13-15 (after its last detection): every frame must still be blurred, and the sidecar says how."""
    import dataclasses

    from toolchain.blur.app import blur_video

    dropped = {0, 1, 4, 5, 6, 13, 14, 15}
    _drop_detections(monkeypatch, lambda i, box: i not in dropped)
    r = dataclasses.replace(recipe, blur=dataclasses.replace(recipe.blur, max_gap=4, hold=3))
    out = tmp_path / "held.mp4"
    blur_video(r, ONE_FACE, out, host_engine, max_frames=16, progress=False)
    side = _sidecar(out)
    kinds = {i: [f["kind"] for f in side[i]] for i in range(16)}
    assert kinds[0] == kinds[1] == ["lead"]  # backwards: blurred before the first detection
    assert kinds[4] == kinds[5] == kinds[6] == ["gap"]  # between two detections
    assert kinds[13] == kinds[14] == kinds[15] == ["hold"]  # after the last detection
    assert all(kinds[i] == ["detected"] for i in range(16) if i not in dropped)
    assert len({f["track"] for i in range(16) for f in side[i]}) == 1
    # The gap's boxes lie between the two detections around it (filled from both sides).
    b3, b5, b7 = (np.array(side[i][0]["box"]) for i in (3, 5, 7))
    assert np.all(b5 >= np.minimum(b3, b7) - 0.01) and np.all(b5 <= np.maximum(b3, b7) + 0.01)
    drops = _face_drops(recipe, ONE_FACE, out, 16)
    assert all(len(d) == 1 for d in drops)
    assert min(d[0] for d in drops) >= 0.9, drops  # every frame blurred, the dropped ones included

    # Without the hold (max_gap 0, hold 0) the same double leaves those frames sharp: the test can fail.
    r0 = dataclasses.replace(recipe, blur=dataclasses.replace(recipe.blur, max_gap=0, hold=0))
    out0 = tmp_path / "nohold.mp4"
    blur_video(r0, ONE_FACE, out0, host_engine, max_frames=16, progress=False)
    drops0 = _face_drops(recipe, ONE_FACE, out0, 16)
    assert all(drops0[i][0] < 0.5 for i in dropped) and all(drops0[i][0] >= 0.9 for i in range(16) if i not in dropped)


def test_tracker_hold_follows_the_predicted_position():
    from toolchain.blur.pipeline.track import HOLD, Tracker

    tr = Tracker(max_gap=2, hold=3)
    for i in range(4):  # moving right 10 px a frame
        tr.push(i, [[10 * i, 0, 10 * i + 40, 40]], [0.9])
    for i in range(4, 8):
        tr.push(i, np.zeros((0, 4)), np.zeros(0))
    frames = dict(tr.ready() + tr.flush())
    held = [frames[i][0] for i in (4, 5, 6)]
    assert all(f.kind == HOLD for f in held) and frames[7] == []
    centres = [(f.box[0] + f.box[2]) / 2 for f in held]
    assert np.allclose(centres, [60, 70, 80], atol=6)  # constant velocity, smoothed


def test_audit_catches_a_face_the_blur_detector_never_saw(recipe, host_engine, tmp_path, monkeypatch):
    """The double never reports the faces in the right half: the blur leaves them sharp; the audit,
    with detectors of its own, must find them, name frame and position, and keep OUT absent."""
    from toolchain.blur.app import blur_video
    from toolchain.media import video_info

    w = video_info(TWO_FACES)["width"]
    _drop_detections(monkeypatch, lambda i, box: (box[0] + box[2]) / 2 < w / 2)
    out = tmp_path / "leaky.mp4"
    out.write_bytes(b"stale result of an earlier run")
    info = blur_video(recipe, TWO_FACES, out, host_engine, max_frames=4, progress=False, verify=True)
    audit = info["proof"]
    assert not audit["ok"] and audit["leaks"] >= 4
    assert all((f["box"][0] + f["box"][2]) / 2 > w / 2 for f in audit["leak_faces"])  # the hidden face
    assert audit["failures"][0].startswith("leak: frame 0 at x ")
    assert not out.exists()  # nothing at OUT looks finished ...
    assert (tmp_path / "leaky.unverified.mp4").stat().st_size > 1000  # ... the video is kept under this name
    assert (tmp_path / "leaky.audit.png").stat().st_size > 1000
    assert json.loads((tmp_path / "leaky.audit.json").read_text())["leaks"] == audit["leaks"]


def test_audit_passes_and_renames_when_nothing_leaks(recipe, host_engine, tmp_path):
    from toolchain.blur.app import blur_video

    out = tmp_path / "ok.mp4"
    info = blur_video(recipe, TWO_FACES, out, host_engine, max_frames=4, progress=False, verify=True)
    a = info["proof"]
    assert a["ok"], a["failures"]
    assert a["faces_judged"] >= 8 and all(n >= 4 for n in a["faces_judged_per_judge"].values())
    assert out.exists() and not (tmp_path / "ok.unverified.mp4").exists()


# ----------------------------------------------------------------------------- recall-first geometry

def test_implausible_landmarks_get_the_untilted_scaled_ellipse():
    from toolchain.blur.ops.recall import blur_geometry, plausible_landmarks
    from toolchain.blur.pipeline.track import DETECTED, Face
    from toolchain.reference.masks import frame_mask

    box = np.array([100.0, 100.0, 180.0, 200.0])
    frontal = np.array([[120, 130], [160, 130], [140, 150], [125, 170], [155, 170]], dtype=np.float64)
    assert plausible_landmarks(box, frontal, 0.9, 0.5)
    back_of_head = np.array([[150, 160], [130, 110], [140, 190], [120, 120], [170, 110]], dtype=np.float64)
    assert not plausible_landmarks(box, back_of_head, 0.9, 0.5)
    assert not plausible_landmarks(box, frontal, 0.35, 0.5)  # below the validation threshold
    boxes, lms, ok = blur_geometry([Face(0, box, DETECTED, 0.9, back_of_head)], 1.3, 0.5)
    assert not ok[0]
    m = frame_mask(boxes, lms, 300, 300)
    inscribed = frame_mask(box[None], None, 300, 300, feather=1e-6) >= 0.5
    assert (m[inscribed] >= 0.99).all()  # the whole inscribed ellipse of the box is blurred fully
    raw = frame_mask(box[None], back_of_head[None], 300, 300)
    assert (raw[inscribed] < 0.5).mean() > 0.05  # what the tilt from noise used to leave sharp


def test_modes_replace_the_face(recipe):
    from toolchain.blur.ops.modes import anonymise
    from toolchain.detector import detect_batch
    from toolchain.media import read_frames
    from toolchain.runners import TorchRunner

    f = read_frames(ONE_FACE, max_frames=1)[0]
    d = detect_batch([f], recipe, TorchRunner(recipe))[0]
    x1, y1, x2, y2 = d.boxes[0]
    cy, cx = int((y1 + y2) / 2), int((x1 + x2) / 2)
    solid = anonymise(f, d.boxes, None, "solid")
    assert (solid[cy - 5:cy + 5, cx - 5:cx + 5] == 0).all()
    pix = anonymise(f, d.boxes, None, "pixelate")
    blur = anonymise(f, d.boxes, None, "blur")
    assert not np.array_equal(pix, blur) and not np.array_equal(pix, f)
    far = (slice(0, 20), slice(0, 20))
    assert np.array_equal(solid[far], f[far]) and np.array_equal(pix[far], f[far])
    with pytest.raises(ValueError):
        anonymise(f, d.boxes, None, "smudge")


def test_modes_other_than_blur_are_refused_on_the_tensor_engine(recipe, tmp_path):
    from toolchain.blur.app import blur_video
    from toolchain.blur.engines import make_engine
    from toolchain.recipe import with_blur

    eng = make_engine(recipe, "torch", "cpu", tensor_path=True, batch=2)
    with pytest.raises(FbtoolError, match="host engines only"):
        blur_video(with_blur(recipe, mode="solid"), ONE_FACE, tmp_path / "x.mp4", eng, max_frames=2, progress=False)
    assert not (tmp_path / "x.mp4").exists()


def test_recipe_blur_section_is_validated(tmp_path):
    import yaml

    from toolchain.recipe import RECIPES_DIR, load_recipe

    base = yaml.safe_load((RECIPES_DIR / "retinaface_mnet025.yaml").read_text())
    for field, value, needle in [("score", 0.9, "blur.score"), ("hold", -1, "blur.hold"),
                                 ("mask_scale", 0.5, "blur.mask_scale"), ("mode", "smudge", "blur.mode"),
                                 ("colour", 1, "blur.colour")]:
        data = dict(base, blur=dict(base["blur"], **{field: value}))
        p = tmp_path / "r.yaml"
        p.write_text(yaml.safe_dump(data))
        with pytest.raises(FbtoolError, match=needle):
            load_recipe(p)
    r = load_recipe("retinaface_mnet025")
    assert r.blur.score < r.thresholds.score  # recall first by default


# ----------------------------------------------------------------------------- audio, several inputs

def _clip_with_audio(path, frames=8):
    import av

    from toolchain.media import read_frames

    imgs = read_frames(ONE_FACE, max_frames=frames)
    with av.open(str(path), "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = imgs[0].shape[1], imgs[0].shape[0], "yuv420p"
        a = c.add_stream("aac", rate=44100)
        for img in imgs:
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        t = np.arange(int(44100 * frames / 10)) / 44100
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for s in range(0, samples.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(samples[:, s:s + 1024].copy(), format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, s
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)


def test_audio_stream_is_kept(recipe, host_engine, tmp_path):
    import av

    from toolchain.blur.app import blur_video

    src = tmp_path / "talk.mp4"
    _clip_with_audio(src)
    out = tmp_path / "talk_blurred.mp4"
    info = blur_video(recipe, src, out, host_engine, progress=False)
    assert info["audio_packets"] > 10
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.video[0].frames == 8
    # No audio in, none out (and nothing fails)
    info = blur_video(recipe, ONE_FACE, tmp_path / "silent.mp4", host_engine, max_frames=2, progress=False)
    assert info["audio_packets"] == 0


def test_cli_several_inputs_and_a_folder(tmp_path):
    import shutil

    from click.testing import CliRunner

    from toolchain.cli import cli
    from toolchain.media import resolve_media

    folder = tmp_path / "in"
    folder.mkdir()
    for name in (ONE_FACE, TWO_FACES):
        shutil.copy(resolve_media(name), folder / name)
    (folder / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["blur", str(folder), "-o", str(out), "--backend", "torch", "--max-frames", "2",
                                   "--mode", "pixelate", "--mask-scale", "1.5"])
    assert res.exit_code == 0, res.output
    for name in (ONE_FACE, TWO_FACES):
        stem = name.rsplit(".", 1)[0]
        assert (out / f"{stem}.mp4").stat().st_size > 1000
        side = json.loads((out / f"{stem}.faces.json").read_text())
        assert side["settings"]["mode"] == "pixelate" and side["settings"]["mask_scale"] == 1.5
    res = CliRunner().invoke(cli, ["blur", ONE_FACE, TWO_FACES, "-o", str(tmp_path / "x.mp4")])
    assert res.exit_code != 0 and "folder" in res.output and "Traceback" not in res.output


def test_float32_union_mask_is_the_reference_mask():
    from toolchain.blur.ops.modes import union_mask
    from toolchain.reference.masks import frame_mask

    rng = np.random.default_rng(1)
    for _ in range(100):
        n = rng.integers(1, 4)
        c, wh = rng.uniform(20, 280, (n, 2)), rng.uniform(4, 120, (n, 2))
        boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
        lm = np.repeat(c[:, None], 5, 1) + rng.normal(0, 10, (n, 5, 2))
        for landmarks in (None, lm):
            ref = frame_mask(boxes, landmarks, 300, 260, 0.15, 45)
            assert np.abs(union_mask(boxes, landmarks, 300, 260, 0.15, 45) - ref).max() < 1e-5


def test_a_scene_cut_ends_every_track():
    from toolchain.blur.pipeline.track import Tracker

    tr = Tracker(max_gap=3, hold=3)
    tr.push(0, [[10, 10, 50, 50]], [0.9])
    tr.push(1, [[10, 10, 50, 50]], [0.9])
    tr.cut(2)  # another shot: nothing held into it, and its first face is not led back into the last shot
    tr.push(2, np.zeros((0, 4)), np.zeros(0))
    tr.push(3, [[200, 10, 240, 50]], [0.9])
    frames = dict(tr.ready() + tr.flush())
    assert [(f.track, f.kind) for f in frames[1]] == [(0, "detected")]  # no lead-in back across the cut
    assert [(f.track, f.kind) for f in frames[2]] == [(1, "lead")]  # no hold of track 0 after it
    assert [(f.track, f.kind) for f in frames[3]] == [(1, "detected")]
