"""`fbtool run`: the stage chain, its order, and when a stage can be skipped.

A stage is redone only when its inputs changed: the recipe, the stage's own options and the
artifacts of the stages before it (by sha256). The fingerprint of what a stage last ran with is
kept in the run folder's manifest under "chain"; its artifacts must still be intact.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FbtoolError
from .fsutil import sha256_file, write_json
from .runfolder import RunFolder, fingerprint

STAGES = ("export", "surgery", "calibrate", "build-engine", "build-parser", "deepstream", "validate")


@dataclass(frozen=True)
class Step:
    stage: str
    run: bool  # False: skipped (up to date, or cannot run here)
    why: str


def select(start: str | None, stop: str | None) -> list[str]:
    for name in (start, stop):
        if name is not None and name not in STAGES:
            raise FbtoolError(f"unknown stage {name!r}", f"stages: {', '.join(STAGES)}")
    i = STAGES.index(start) if start else 0
    j = STAGES.index(stop) if stop else len(STAGES) - 1
    if i > j:
        raise FbtoolError(f"--from {start} comes after --to {stop}", f"order: {' -> '.join(STAGES)}")
    return list(STAGES[i:j + 1])


def upstream_digest(run: RunFolder, stage: str) -> dict:
    """sha256 of every artifact recorded by the stages before `stage`."""
    out = {}
    for s in STAGES[: STAGES.index(stage)]:
        entry = run.stage(s)
        if not entry:
            continue
        for key, a in sorted(entry["artifacts"].items()):
            p = run.root / a["path"]
            out[f"{s}.{key}"] = sha256_file(p) if p.is_file() else ("dir" if p.is_dir() else None)
    return out


def stage_fingerprint(run: RunFolder, recipe, stage: str, options: dict) -> str:
    return fingerprint(stage, recipe.hash, options, upstream_digest(run, stage))


def is_fresh(run: RunFolder, stage: str, fp: str) -> bool:
    if run.data.get("chain", {}).get(stage) != fp or not run.stage(stage):
        return False
    for a in run.stage(stage)["artifacts"].values():
        p = run.root / a["path"]
        if not p.exists() or (a.get("sha256") and p.is_file() and sha256_file(p) != a["sha256"]):
            return False
    return True


def mark_done(out, stage: str, fp: str) -> None:
    run = RunFolder(out)  # re-read: the stage itself has just rewritten the manifest
    run.data.setdefault("chain", {})[stage] = fp
    write_json(run.path, run.data)


def tensorrt_status(runtime: str) -> tuple[bool, str]:
    """Can build-engine run here with this runtime? (False, reason) where the builder is absent."""
    try:
        from .trt.adapter import load_backend

        load_backend(runtime)
    except FbtoolError as exc:
        return False, exc.message
    except ImportError as exc:
        return False, f"{runtime} does not import: {exc}"
    return True, "ok"
