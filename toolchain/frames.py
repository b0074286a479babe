"""Named frame sets drawn from the recipe's media lists (real frames, never random noise)."""

from __future__ import annotations

import numpy as np

from .media import iter_frames


def sample_frames(media: list[str] | tuple[str, ...], per_clip: int = 1, step: int = 1,
                  start: int = 0) -> list[tuple[str, int, np.ndarray]]:
    """(clip, frame index, BGR frame): `per_clip` frames from each clip, `step` frames apart."""
    out = []
    for clip in media:
        for idx, frame in iter_frames(clip, step=step, start=start, max_frames=per_clip):
            out.append((clip, idx, frame))
    return out


def parity_frames(recipe, n: int = 4) -> list[np.ndarray]:
    """The first frame of each validation clip, cycled to n frames."""
    frames = [f for _, _, f in sample_frames(recipe.validation_media[: max(n, 1)] or ["classroom.gif"])]
    return [frames[i % len(frames)] for i in range(n)]
