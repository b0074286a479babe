"""What fbtool's DeepStream blur app writes, computed here, and judged by pixels.

The emitted pipeline (toolchain/deepstream/app.py, run_blur_<model>.sh) is nvinfer -> nvtracker ->
nvdsvideotemplate with fbtool's blur library. Each step has its Python counterpart:
- nvinfer: the emulation with the compiled parser (nvinfer.emulation.NvInferEmulator);
- nvtracker + the hold/mask component (plugins/dsblur/ds_hold.cpp): nvinfer.emulation.tracker
  (DeepStreamHold: IOU tracker, probationAge 0, held faces with their last box and mask, the recipe's
  mask rule: the whole box, or binary non-empty contour masks), compared with the compiled component in tests/test_ds_hold.py;
- the blur kernel (plugins/dsblur/blur.cu): its torch twin ops/dsblur.py (issue 15's GPU half compares
  the two on the H200).
On consecutive frames of each clip (the hold needs them), the output goes through the same pixel
proof (blur.proof) and independent audit (blur.audit) as `fbtool blur --verify`. `fbtool validate`
attaches the verdict to its nvinfer candidate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def deepstream_blur(recipe, frames: list[np.ndarray], objects: list[list]) -> tuple[list[np.ndarray], list[list]]:
    """nvinfer objects of consecutive frames -> (blurred frames, per frame the Targets blurred)."""
    from ..nvinfer.emulation.tracker import DeepStreamHold
    from .ops.dsblur import blur_frame

    hold = DeepStreamHold(recipe.blur.hold, recipe.blur.track_iou, tuple(range(len(recipe.labels))),
                          recipe.live_blur_mask)
    targets = hold.run(objects)
    out = [blur_frame(f, [t.obj for t in tg]) if tg else f.copy() for f, tg in zip(frames, targets)]
    return out, targets


def _boxes(targets) -> np.ndarray:
    from .ops.dsblur import GROW

    b = np.array([t.obj.box for t in targets], np.float64).reshape(-1, 4)
    c, half = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) / 2 * GROW  # what the kernel blurs
    return np.concatenate([c - half, c + half], axis=1)


def verify_deepstream(recipe, infer_config: str | Path, clips: list[str], frames_per_clip: int = 16,
                      judges=None, runner=None) -> dict:
    """The DeepStream blur app's output on the first `frames_per_clip` frames of each clip, through the
    pixel proof and the audit. Returns {"ok", "frames", "held", "proof", "audit", "summary"}."""
    from ..frames import sample_frames
    from ..nvinfer.emulation import NvInferEmulator
    from ..nvinfer.names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH
    from ..runners import TorchRunner
    from .audit import audit_frames, default_judges
    from .proof import ProofReport, check_frame

    emu = NvInferEmulator(infer_config, parser="compiled", mux=(STREAMMUX_WIDTH, STREAMMUX_HEIGHT))
    runner = runner or TorchRunner(recipe)
    judges = judges if judges is not None else default_judges()
    proof = ProofReport()
    pairs, blurred_boxes, held, n = [], {}, 0, 0
    from ..detector import detect_batch

    for clip in clips:
        frames = [f for _, _, f in sample_frames([clip], per_clip=frames_per_clip, step=1)]
        if not frames:
            continue
        outs, targets = deepstream_blur(recipe, frames, emu.infer(frames))
        refs = detect_batch(frames, recipe, runner)
        for a, b, tg, d in zip(frames, outs, targets, refs):
            check_frame(proof, n, a, b, d, recipe.mask.max_tilt_deg)
            pairs.append((n, a, b))
            blurred_boxes[n] = _boxes(tg)
            held += sum(t.held for t in tg)
            n += 1
    audit, _ = audit_frames(pairs, judges, blurred=lambda i: blurred_boxes[i])
    ok = proof.ok and audit.ok
    return {"ok": ok, "frames": n, "held_faces": held, "proof": proof.to_dict(), "audit": audit.to_dict(),
            "summary": f"DeepStream blur (hold {recipe.blur.hold}, {held} held faces): proof {proof.summary()}; "
                       f"audit {audit.summary()}",
            "failures": (proof.failures() + audit.failures())[:20]}
