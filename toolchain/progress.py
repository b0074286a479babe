"""Progress for the steps a user waits on (tqdm on stderr, as the blur job's frame bar).

A bar shows only when stderr is a terminal (tqdm's `disable=None`): logs, pipes and CI stay clean,
and tests see none. `FBTOOL_PROGRESS=0` turns bars off on a terminal too.
"""

from __future__ import annotations

import os
from contextlib import contextmanager


def _disabled() -> bool | None:
    return True if os.environ.get("FBTOOL_PROGRESS", "1") == "0" else None


@contextmanager
def steps(desc: str, total: int):
    """A bar over the named steps of one command: `with steps("calibrate", 5) as step: step("stats")`.

    `step(what)` marks the previous step done and shows `what` as the one running now."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", leave=False, disable=_disabled(), dynamic_ncols=True,
               bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar:20}| {postfix} [{elapsed}]")
    started = [False]

    def step(what: str) -> None:
        if started[0]:
            bar.update(1)
        started[0] = True
        bar.set_postfix_str(what)

    try:
        yield step
    finally:
        bar.close()


def frames(iterable, desc: str, total: int | None = None, unit: str = "frame"):
    """A bar over a loop of frames (or candidates: `unit`)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, disable=_disabled(), dynamic_ncols=True)
