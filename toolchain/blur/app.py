"""`fbtool blur`: the pipelined face-blur job (library side; the CLI only parses options)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import FbtoolError
from ..fsutil import write_text
from .engines import Engine
from .pipeline.core import Pipeline, Stage


def build_stages(engine: Engine, recipe, source, sink_fn, stop, pinned=None, count: int | None = None,
                 fuse_gpu: bool = True) -> list[Stage]:
    """Stages for `engine`. `source` yields (index, frame); or `pinned` is an [N, H, W, 3] pinned tensor."""
    from .pipeline import stages as st
    from .pipeline.track import track_stage

    b = engine.batch
    # Host engines: faces become tracks (the gaps and the hold are blurred too), then the recall-first blur.
    tail = [Stage("track", track_stage(recipe.blur)), *contour_stages(engine, recipe),
            Stage("blur", st.host_blur(recipe)), Stage("encode", sink_fn)]
    if engine.emulator is not None:
        return [Stage("decode", st.frame_source(source)), Stage("batch", st.host_batches(b)),
                Stage("infer", st.nvinfer_infer(engine.emulator)), *tail]
    if engine.model is None:
        return [Stage("decode", st.frame_source(source)), Stage("preprocess", st.host_preprocess(recipe, b)),
                Stage("infer", st.host_infer(engine.runner, recipe)), Stage("post", st.host_post(recipe)), *tail]
    if recipe.contour.model is not None:
        raise FbtoolError(f"--contour {recipe.contour.model} runs on the host engines (ort, torch --device cpu, "
                          "tensorrt, nvinfer)", "the GPU tensor path blurs ellipses; DeepStream runs FaceMesh as an SGIE")
    from ..reference.torch_port import anchors_torch

    dev = engine.tensor_device
    streams = st.Streams(dev)
    anchors = anchors_torch(recipe, dev)
    tokens = st.gpu_tokens(4, stop)
    head = ([Stage("decode", st.pinned_batches(pinned, b, streams, count))] if pinned is not None else
            [Stage("decode", st.frame_source(source)), Stage("batch", st.cuda_batches(b, stop, streams))])
    infer = st.cuda_infer(engine.model, recipe, engine.dtype, streams)
    post, blur = st.cuda_post(recipe, anchors, streams), st.cuda_blur(recipe, streams, engine.cuda_blur)
    if fuse_gpu:
        # One thread issues all GPU compute (generators chained): measured on the H100, three Python
        # threads launching kernels fought over the GIL and ran slower than one (docs/bench.md).
        middle = [Stage("gpu", lambda items: blur(post(infer(items))))]
    else:
        middle = [Stage("infer", infer), Stage("post", post), Stage("blur", blur)]
    return head + [Stage("upload", st.cuda_upload(dev, tokens, stop, streams)), *middle,
                   Stage("download", st.cuda_download(stop, tokens, streams)), Stage("encode", sink_fn)]


def contour_stages(engine: Engine, recipe) -> list[Stage]:
    """[Stage 'contour'] where the recipe names a landmark model (`--contour facemesh`), else []."""
    if recipe.contour.model is None:
        return []
    from ..recipe import landmark_recipe
    from .audit import judge_runner
    from .ops.contour import ContourMasks
    from .pipeline.track import contour_stage

    fm = landmark_recipe(recipe)
    # FaceMesh on the host: onnxruntime on its ONNX exported once into the cache from the verified weights
    # and checked against PyTorch (the audit judges' runner): ~1 ms a face on the 2-core CPU, 2-3x less than PyTorch
    masks = ContourMasks(recipe, fm, judge_runner(fm))
    return [Stage("contour", contour_stage(masks))]


def run_frames(engine: Engine, recipe, source: Iterable | None = None, *, pinned=None, count: int | None = None,
               writer_factory=None, results: list | None = None, keep: list | None = None, progress=None,
               maxsize: int = 3, fuse_gpu: bool = True) -> dict:
    """Run the pipeline once; returns fps, latency percentiles and per-stage busy times."""
    import threading

    from .pipeline import stages as st

    latencies: list[float] = []
    stop = threading.Event()  # made first: the pinned-buffer pools wait on it too
    sink_fn = st.sink(None, results, latencies, progress, keep, writer_factory)
    pipe = Pipeline(build_stages(engine, recipe, source, sink_fn, stop, pinned, count, fuse_gpu), maxsize=maxsize,
                    stop=stop)
    import sys

    # Threads that launch GPU kernels hand the GIL to each other often; a short switch interval keeps a
    # thread that waits for it from waiting the default 5 ms each time.
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, 0.0005))
    t0 = time.perf_counter()
    try:
        stats = pipe.run()
    finally:
        sys.setswitchinterval(old)
    wall = time.perf_counter() - t0
    n = len(latencies)
    lat = np.asarray(latencies) * 1000.0 if n else np.zeros(1)
    return {"frames": n, "wall_s": wall, "fps": n / wall if wall > 0 else 0.0,
            "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(np.percentile(lat, 99)),
            "stages": [s.to_dict() for s in stats],
            "bound_by": max(stats, key=lambda s: s.busy_s).name if stats else None}


def _writer_factory(output: Path, source: Path):
    from .writer import BlurWriter

    def factory():
        return BlurWriter(output, fps=None, source=source)
    return factory


def output_paths(output) -> dict[str, Path]:
    """Files of one blur job. With --verify the video is encoded as `<stem>.unverified.mp4` and renamed
    to OUT only when the audit passes: a failed audit never leaves a finished-looking OUT."""
    out = Path(output)
    return {"video": out, "unverified": out.with_name(out.stem + ".unverified.mp4"),
            "sidecar": out.with_name(out.stem + ".faces.json"), "audit": out.with_name(out.stem + ".audit.json"),
            "sheet": out.with_name(out.stem + ".audit.png")}


def blur_video(recipe, source, output, engine: Engine, json_path=None, max_frames: int | None = None,
               start: int = 0, progress: bool = True, verify: bool = False, judges=None) -> dict:
    """Blur every face of `source` (MP4/GIF/...) into the H.264 MP4 `output` (written atomically), with
    the sidecar `<stem>.faces.json` (what was blurred per frame) and, with `verify`, the independent
    audit (toolchain.blur.audit: `<stem>.audit.json`, `<stem>.audit.png`)."""
    import os

    from ..fsutil import refuse_overwrite, sweep_stale, temp_beside, write_text
    from ..media import iter_frames, resolve_media, video_info
    from .audio import keep_audio

    if max_frames is not None and max_frames < 1:
        raise FbtoolError(f"--max-frames must be at least 1, got {max_frames}", "leave it out for every frame")
    if start < 0:
        raise FbtoolError(f"--start must be >= 0, got {start}", "frames are counted from 0")
    if engine.model is not None and recipe.blur.mode != "blur":
        raise FbtoolError(f"--mode {recipe.blur.mode} runs on the host engines only (the CUDA engine blurs)",
                          "use --backend ort or --device cpu, or leave --mode out")
    src = resolve_media(source)
    out = Path(output)
    if out.suffix.lower() != ".mp4":
        raise FbtoolError(f"output {out} is not an .mp4", "the blur job writes H.264 MP4: name it *.mp4")
    if out.is_dir():
        raise FbtoolError(f"output {out} is a folder", "give a file name ending in .mp4")
    paths = output_paths(out)
    encoded = paths["unverified"] if verify else out
    refuse_overwrite({"-o": out, "--json": json_path, "the sidecar": paths["sidecar"]},
                     {"the video": src, **engine.inputs})
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out.parent, only=encoded.name)  # part files of a killed earlier run to this output
    # The JSON's temporary is made first: an unwritable --json fails before minutes of work, and a
    # late failure (JSON, audio) removes the new video (no half result).
    json_tmp = temp_beside(Path(json_path)) if json_path else None
    had_output = encoded.exists()
    results: list = []
    bar = None
    vinfo = video_info(src)
    try:
        if progress:
            from tqdm import tqdm

            total = max(int(vinfo.get("frames") or 0) - start, 0) or None
            total = min(total, max_frames) if total and max_frames else (total or max_frames)
            bar = tqdm(total=total, unit="frame", desc=f"blur {src.name}", dynamic_ncols=True)
        try:
            info = run_frames(engine, recipe, iter_frames(src, start=start, max_frames=max_frames),
                              writer_factory=_writer_factory(encoded, src), results=results,
                              progress=bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        info["audio_packets"] = keep_audio(encoded, src, start, info["frames"], vinfo.get("fps"))
        if json_tmp is not None:
            json_tmp.write_text("".join(json.dumps({"frame": r["frame"], "faces": r["faces"]}) + "\n"
                                        for r in results))
            os.replace(json_tmp, json_path)
    except BaseException:
        if not had_output and encoded.exists():
            encoded.unlink()
        raise
    finally:
        if json_tmp is not None and json_tmp.exists():
            json_tmp.unlink()
    tracked = bool(results) and "blurred" in results[0]
    blurred = {r["frame"]: r["blurred"] if tracked else r["faces"] for r in results}
    sidecar = {"source": str(src), "output": str(out), "backend": engine.name,
               "settings": dataclasses.asdict(recipe.blur) if tracked else None,
               "kinds": {"detected": "found by the detector in this frame", "gap": "between two detections of "
                         "its track", "lead": "before its track's first detection", "hold": "after its track's "
                         "last detection, at its predicted position"} if tracked else None,
               "frames": [{"frame": i, "faces": blurred[i]} for i in sorted(blurred)]}
    write_text(paths["sidecar"], json.dumps(sidecar) + "\n")
    info.update({"output": str(out), "faces": sum(len(r["faces"]) for r in results), "backend": engine.name,
                 "batch": engine.batch, "sidecar": str(paths["sidecar"]),
                 "faces_blurred": sum(len(v) for v in blurred.values()),
                 "faces_held": sum(1 for v in blurred.values() for f in v if f.get("kind", "detected") != "detected"),
                 "faces_oval": sum(1 for v in blurred.values() for f in v if f.get("mask", "").startswith("oval"))})
    if verify:
        from .audit import audit_video

        # The PSNR away from faces leaves out what the job blurred (recall first: it may blur a false
        # positive), grown like the proof's faces and by the mask scale.
        grow = 1.5 * (recipe.blur.mask_scale if tracked else 1.0)
        boxes = {i: np.asarray([f["box"] for f in v], dtype=np.float64).reshape(-1, 4) for i, v in blurred.items()}
        report = audit_video(src, encoded, start=start, max_frames=max_frames, judges=judges,
                             blurred=lambda i: boxes.get(i, np.zeros((0, 4))), blurred_grow=grow,
                             sheet_path=paths["sheet"], progress=progress)
        d = report.to_dict()
        d.update({"sheet": str(paths["sheet"]), "video": str(out if report.ok else encoded)})
        write_text(paths["audit"], json.dumps(d, default=float) + "\n")
        if report.ok:
            os.replace(encoded, out)
        elif out.exists():  # a stale OUT from an earlier run would look like this run's verified result
            out.unlink()
        d["audit_json"] = str(paths["audit"])
        info["proof"] = d
        info["output"] = d["video"]
    return info


def is_uri(source) -> bool:
    return "://" in str(source)


def uri_stem(uri: str) -> str:
    """An output name for a stream URI: its last path segment without suffix, else its host
    (rtsp://cam1/live/ch1 -> ch1, http://h/v/a.mp4 -> a, rtsp://10.0.0.5:554/ -> 10.0.0.5)."""
    import re
    from urllib.parse import urlsplit

    u = urlsplit(str(uri))
    segs = [x for x in u.path.split("/") if x]
    name = Path(segs[-1]).stem if segs else (u.hostname or "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "stream"


def plan_outputs(sources, output, uris: bool = False) -> list[tuple]:
    """(input, output MP4) pairs. One input file and OUT.mp4: as given. Several inputs, or a folder
    (its video files, sorted): OUT is a folder and each output is OUT/<input stem>.mp4 (a stream URI's
    stem: uri_stem). `uris`: stream URIs are allowed (the NVDEC path; they stay strings)."""
    from ..media import VIDEO_SUFFIXES, resolve_media

    if not sources:
        raise FbtoolError("no input given", "name one or more videos, or a folder of them")
    files: list = []
    folder_given = False
    for s in sources:
        if is_uri(s):
            if not uris:
                raise FbtoolError(f"{s} is a stream URI; this path decodes files only",
                                  "use --device cuda --backend torch with PyNvVideoCodec (NVDEC opens RTSP/HTTP), "
                                  "or save the stream to a file first")
            files.append(str(s))
            continue
        p = Path(s)
        if p.is_dir():
            folder_given = True
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise FbtoolError(f"folder {p} holds no video", f"known video types: {' '.join(sorted(VIDEO_SUFFIXES))}")
            files += found
        else:
            files.append(resolve_media(s))
    out = Path(output)
    if len(files) == 1 and not folder_given:
        return [(files[0], out)]
    if out.suffix.lower() == ".mp4":
        raise FbtoolError(f"{len(files)} inputs but -o {out} names one MP4",
                          "with several inputs or a folder, -o names a folder: each output is FOLDER/<name>.mp4")
    pairs = [(f, out / ((uri_stem(f) if is_uri(f) else f.stem) + ".mp4")) for f in files]
    stems = [o.name for _, o in pairs]
    dup = sorted({n for n in stems if stems.count(n) > 1})
    if dup:
        raise FbtoolError(f"two inputs would both write {out / dup[0]}", "rename one of the inputs")
    return pairs


def blur_many(recipe, sources, output, engine: Engine, json_path=None, on_result=None, **kw) -> list[dict]:
    """blur_video for each input of plan_outputs, in turn; an input that fails (bad file, failed audit)
    does not stop the others. Each result goes to `on_result` as it ends; `error` holds a failure."""
    pairs = plan_outputs(sources, output)
    if json_path and len(pairs) > 1:
        raise FbtoolError("--json with several inputs", "the sidecar <name>.faces.json beside each output lists "
                          "what was blurred; run one input at a time for the detector's JSON lines")
    results = []
    for src, out in pairs:
        try:
            info = blur_video(recipe, src, out, engine, json_path=json_path, **kw)
            info["source"] = str(src)
        except FbtoolError as exc:
            if len(pairs) == 1:
                raise
            info = {"source": str(src), "output": str(out), "error": str(exc)}
        results.append(info)
        if on_result is not None:
            on_result(info)
    return results


def blur_nvdec(recipe, sources, output, engine: Engine, json_path=None, encode: bool = True,
               max_frames: int | None = None, verify: bool = False, nvdec: bool | str = True, on_result=None,
               workers: int | None = None, x264_threads: int | None = None, plan=None) -> list[dict]:
    """Every input through the NVDEC + CUDA-graph path at once (multistream.blur_streams: decoded on the
    GPU, batched across inputs, no tracks), outputs named as plan_outputs says, each with its sidecar
    `<stem>.faces.json` (the faces blurred per frame); then per output the same independent audit and
    the same rule as blur_video: OUT only when it passes, else OUT.unverified.mp4.

    The inputs run together, so a bad input stops the call before any work, and an error midway
    (a decoder, an encoder) leaves no output of this call at all (temporaries removed). `nvdec=False`
    decodes with PyAV instead (tests, and machines without NVDEC); "fbtool" / "pynvvideocodec" name the
    NVDEC implementation (True: streams.NVDEC_DEFAULT). plan: pipeline/memory.py's (--memory-lean). Returns one
    dict per input."""
    import os

    from ..fsutil import refuse_overwrite, sweep_stale
    from .multistream import blur_streams

    if max_frames is not None and max_frames < 1:
        raise FbtoolError(f"--max-frames must be at least 1, got {max_frames}", "leave it out for every frame")
    if engine.model is not None and recipe.blur.mode != "blur":
        raise FbtoolError(f"--mode {recipe.blur.mode} runs on the host engines only (the CUDA engine blurs)",
                          "use --backend ort or --device cpu, or leave --mode out")
    pairs = plan_outputs(sources, output, uris=True)
    if verify and any(is_uri(src) for src, _ in pairs):
        raise FbtoolError("--verify with a stream URI input", "the audit reads the input again: save the stream "
                          "to a file and verify that, or leave --verify out")
    if json_path and len(pairs) > 1:
        raise FbtoolError("--json with several inputs", "each output's sidecar <name>.faces.json holds its "
                          "faces per frame; run one input at a time for the detector's JSON lines")
    outs = []
    for src, out in pairs:
        if out.suffix.lower() != ".mp4":
            raise FbtoolError(f"output {out} is not an .mp4", "the blur job writes H.264 MP4: name it *.mp4")
        if out.is_dir():
            raise FbtoolError(f"output {out} is a folder", "give a file name ending in .mp4")
        paths = output_paths(out)
        refuse_overwrite({"-o": out if encode else None, "--json": json_path, "the sidecar": paths["sidecar"]},
                         {"the video": None if is_uri(src) else src, **engine.inputs})
        outs.append(paths)
    for p in outs:
        p["sidecar"].parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(p["sidecar"].parent, only=(p["unverified"] if verify else p["video"]).name)
    encoded = [p["unverified"] if verify else p["video"] for p in outs]
    info = blur_streams(recipe, [s for s, _ in pairs], encoded if encode else None, engine,
                        [json_path] if json_path else None, encode=encode, max_frames=max_frames, nvdec=nvdec,
                        workers=workers, x264_threads=x264_threads, plan=plan)
    results = []
    for i, ((src, out), paths) in enumerate(zip(pairs, outs)):
        rows = info["rows"][i]
        sidecar = {"source": str(src), "output": str(out) if encode else None, "backend": info["backend"],
                   "settings": None, "kinds": None, "frames": rows}
        write_text(paths["sidecar"], json.dumps(sidecar) + "\n")
        r = {"source": str(src), "output": str(out) if encode else "(not encoded)", "sidecar": str(paths["sidecar"]),
             "frames": len(rows), "faces": sum(len(x["faces"]) for x in rows), "fps": info["fps"],
             "backend": info["backend"], "batch": info["batch"], "inputs": len(pairs), "stages": [],
             "bound_by": info["bound_by"] + (f", {len(pairs)} inputs together" if len(pairs) > 1 else ""),
             "encoder": info.get("encoder"), "fps_gpu_side": info.get("fps_gpu_side"),
             "cpu_busy_cores": info.get("cpu_busy_cores"), "feeder_thread_busy": info.get("feeder_thread_busy")}
        if verify and encode:
            from .audit import audit_video

            report = audit_video(src, encoded[i], max_frames=max_frames, sheet_path=paths["sheet"])
            d = report.to_dict()
            if report.ok:
                os.replace(encoded[i], out)
            elif out.exists():  # a stale OUT from an earlier run would look like this run's verified result
                out.unlink()
            d.update({"sheet": str(paths["sheet"]), "video": str(out if report.ok else encoded[i]),
                      "audit_json": str(paths["audit"])})
            write_text(paths["audit"], json.dumps(d, default=float) + "\n")
            r["proof"] = d
            r["output"] = d["video"]
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results
