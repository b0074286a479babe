"""`fbtool detect`: run the reference model on an image or video, write annotated output."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import FbtoolError
from .fsutil import atomic_path, write_text
from .media import is_image, iter_frames, resolve_media


def detect(recipe, source, output, weights=None, onnx=None, max_frames: int | None = None,
           json_path=None, progress=None) -> dict:
    """Annotate `source` into `output` (an image for an image; first frames as PNGs / MP4 for videos)."""
    import cv2

    from .detector import detect_batch
    from .draw import draw_detections
    from .fsutil import refuse_overwrite
    from .runners import OrtRunner, TorchRunner

    src = resolve_media(source)
    out = Path(output)
    refuse_overwrite({"-o": out, "--json": json_path}, {"the source": src, "--onnx": onnx, "--weights": weights})
    runner = OrtRunner(onnx) if onnx else TorchRunner(recipe, weights)
    results = []
    if is_image(src) or out.suffix.lower() in (".png", ".jpg", ".jpeg"):
        idx, frame = next(iter_frames(src, max_frames=1))
        dets = detect_batch([frame], recipe, runner)[0]
        img = draw_detections(frame, dets, recipe)
        with atomic_path(out) as tmp:
            if not cv2.imwrite(str(tmp), img):
                raise FbtoolError(f"cannot write {out}", "use a .png or .jpg output name")
        results.append({"frame": idx, "faces": dets.to_json()})
    else:
        from .video_writer import VideoWriter

        with VideoWriter(out, fps=None, source=src) as writer:
            for idx, frame in iter_frames(src, max_frames=max_frames):
                dets = detect_batch([frame], recipe, runner)[0]
                writer.write(draw_detections(frame, dets, recipe))
                results.append({"frame": idx, "faces": dets.to_json()})
                if progress:
                    progress(1)
    if json_path:
        write_text(json_path, "".join(json.dumps(r) + "\n" for r in results))
    return {"frames": len(results), "faces": sum(len(r["faces"]) for r in results), "output": str(out),
            "runner": runner.name}
