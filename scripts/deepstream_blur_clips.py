"""The DeepStream blur app, emulated (nvinfer with the compiled parser -> nvtracker hold -> fbtool's blur
kernel's twin), on EVERY frame of every shared clip, judged by the pixel proof and the independent audit
(toolchain/blur/deepstream.py, what `fbtool validate` runs on 16 frames a clip). docs/deepstream.md.

Two verdicts per clip, kept apart: PRIVACY (the exit code): the audit passes (no face its two judges
confirm keeps > 10% of its detail) and the proof finds no leak on the reference's faces; COLLATERAL
(reported): the proof's PSNR away from the reference's faces, per frame (>= 30 dB asked). A live pipeline
blurs low-score detections and holds boxes where a face was: the price of its recall, measured here.
Usage: python scripts/deepstream_blur_clips.py RUN_FOLDER OUT.json [CLIP ...]   (RUN_FOLDER: `fbtool run`'s,
on the default recipe)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

VIDEO = (".gif", ".mp4")


def shared_clips() -> list[str]:
    """Every clip in the media folders (../shared/media, $FBTOOL_MEDIA), by name."""
    from toolchain.media import media_dirs

    return sorted({p.name for d in media_dirs() if d.is_dir() for p in d.iterdir() if p.suffix.lower() in VIDEO})


def main(run: str, out: str, clips: list[str], recipe_name: str = "retinaface_mnet025") -> int:
    from toolchain.blur.deepstream import verify_deepstream
    from toolchain.media import resolve_media
    from toolchain.recipe import load_recipe
    from toolchain.runfolder import BLUR_INFER_CONFIG, RunFolder

    recipe = load_recipe(recipe_name)  # the run folder's recipe (the default model's unless told)
    config = RunFolder(run).get(BLUR_INFER_CONFIG)
    rows, ok = [], True
    for clip in clips or shared_clips():
        t0 = time.perf_counter()
        r = verify_deepstream(recipe, config, [str(resolve_media(clip))], frames_per_clip=1_000_000)
        a, p = r["audit"], r["proof"]
        private = a["ok"] and p["face_leaks"] == 0
        row = {"clip": clip, "privacy_ok": private, "ok": r["ok"], "frames": r["frames"], "held_faces": r["held_faces"],
               "summary": r["summary"], "failures": r["failures"], "seconds": round(time.perf_counter() - t0, 1),
               "audit": a, "proof": p}
        rows.append(row)
        ok &= private
        print(f"{clip}: privacy {'PASS' if private else 'FAIL'}, collateral: PSNR away from faces >= "
              f"{p['psnr_min_db'] or float('inf'):.1f} dB, {p['frames_below_min_psnr']}/{r['frames']} frames below "
              f"{p['thresholds']['min_psnr_db']:.0f} dB ({row['seconds']} s)\n    {r['summary']}", flush=True)
    Path(out).write_text(json.dumps({"run": str(run), "config": str(config), "clips": rows}, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
