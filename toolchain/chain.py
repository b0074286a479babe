"""`fbtool run` as a library call: the stage chain, its order, and when a stage can be skipped.

A stage is redone only when its inputs changed: the recipe, the stage's own options and the
artifacts of the stages before it (by sha256). The fingerprint of what a stage last ran with is
kept in the run folder's manifest under "chain"; `RunFolder.is_fresh` is the one freshness rule.
Each stage is one library call (the same function its `fbtool <stage>` command calls).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FbtoolError
from .fsutil import is_regular, sha256_file
from .runfolder import RunFolder, fingerprint, run_lock

STAGES = ("export", "surgery", "calibrate", "build-engine", "build-parser", "deepstream", "validate")


@dataclass(frozen=True)
class RunOptions:
    """What `fbtool run` lets the user choose; every other stage option keeps its default."""

    precision: str = "fp32"  # of the engine and the nvinfer config
    engine_runtime: str = "tensorrt"  # tensorrt | tensorrt-rtx
    ds_version: str = "9.1"
    ds_dir: str | None = None  # default: <out>/deepstream

    def for_stage(self, stage: str, out) -> dict:
        """The options that go into a stage's fingerprint (and its call)."""
        return {
            "export": {},
            "surgery": {},
            "calibrate": {},
            "build-engine": {"precision": self.precision, "runtime": self.engine_runtime},
            "build-parser": {"ds_major": "9" if self.ds_version.startswith("9") else "8"},
            "deepstream": {"precision": self.precision, "ds_version": self.ds_version,
                           "ds_dir": self.ds_dir or str(Path(out) / "deepstream")},
            "validate": {},
        }[stage]


@dataclass(frozen=True)
class Step:
    stage: str
    run: bool  # False: skipped (up to date, or cannot run here)
    why: str  # "ran" | "up to date" | "skipped: <reason>"
    seconds: float = 0.0
    result: Any = None  # what the stage's library call returned
    model: str = ""  # "" for the recipe's own model; the landmark model's recipe name in a two-model run


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
            try:
                p = run.path_of(s, key, a)
            except FbtoolError:
                out[f"{s}.{key}"] = "outside the run folder"
                continue
            out[f"{s}.{key}"] = sha256_file(p) if is_regular(p) else ("dir" if p.is_dir() else None)
    return out


def stage_fingerprint(run: RunFolder, recipe, stage: str, options: dict) -> str:
    return fingerprint(stage, recipe.hash, options, upstream_digest(run, stage))


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


RTX_NOTE = ("`--engine-runtime tensorrt-rtx` builds an engine here, on the CPU (it runs on RTX GPUs only: "
            "Ampere or newer GeForce/RTX/workstation cards, not data-centre GPUs such as the H100/H200)")
TENSORRT_NOTE = "the TensorRT engine is built on a machine with TensorRT and a GPU (e.g. NVIDIA's DeepStream container)"


def can_run(stage: str, options: RunOptions = RunOptions()) -> tuple[bool, str]:
    """What `fbtool run` does with `stage` on this machine, in the words both `run` and `doctor` print.

    (False, "skipped: <why>; <how to make it run>") where the stage cannot run here."""
    if stage == "build-engine":
        ok, why = tensorrt_status(options.engine_runtime)
        if ok:
            return True, f"builds a {options.engine_runtime} engine"
        how = [TENSORRT_NOTE]
        if options.engine_runtime == "tensorrt" and tensorrt_status("tensorrt-rtx")[0]:
            how.insert(0, RTX_NOTE)
        return False, f"skipped: {why}; " + "; ".join(how)
    if stage == "deepstream":
        return True, ("writes the nvinfer and deepstream-app configs and the blur script (running them needs a "
                      "DeepStream host: see `fbtool doctor deepstream-app`)")
    return True, "runs"


def _call(stage: str, recipe, out, o: dict, force: bool = False) -> Any:
    """One stage, through the library function its command calls."""
    if stage == "export":
        from .export import export

        return export(recipe, out)
    if stage == "surgery":
        from .surgery.stage import surgery

        return surgery(recipe, out)
    if stage == "calibrate":
        from .calibrate.pipeline import calibrate

        return calibrate(recipe, out)
    if stage == "build-engine":
        from .engine.build import BuildOptions, build_engine

        return build_engine(recipe, out, BuildOptions(precision=o["precision"], runtime=o["runtime"]))
    if stage == "build-parser":
        from .parser.stage import build_stage

        return build_stage(recipe, out, ds_major=int(o["ds_major"]), force=force)  # --force: no reuse either
    if stage == "deepstream":
        from .deepstream import emit

        return emit(recipe, out, precision=o["precision"], ds_version=o["ds_version"], ds_dir=o["ds_dir"])
    from .validate import validate

    return validate(recipe, out)


def run(recipe, out, options: RunOptions = RunOptions(), start: str | None = None, stop: str | None = None,
        force: bool = False, on_step: Callable[[str, Step], None] | None = None) -> list[Step]:
    """Run the selected stages into the run folder `out`, skipping those that are up to date.

    `on_step(event, step)` is told "start" before a stage runs, then "done" (its result in
    step.result) or "skip"; an exception it raises on "done" stops the chain with that stage not
    marked fresh (so the CLI's verdict on a stage counts as the stage's).
    """
    tell = on_step or (lambda event, step: None)
    with run_lock(out):  # one fbtool per run folder for the whole chain (re-entrant under the CLI's)
        from .recipe import landmark_recipe

        steps = []
        second = landmark_recipe(recipe)
        if second is not None:  # a two-model recipe: the same chain for the landmark model, in <out>/<its name>,
            # first: the detector's deepstream stage writes the landmark model's SGIE config from it, and
            # its validate judges the two-model deployment with it
            steps += _run(second, landmark_out(out, second), options, select(start, stop), force, tell,
                          model=second.name)
        steps += _run(recipe, out, options, select(start, stop), force, tell)
        return steps


def landmark_out(out, second) -> Path:
    """Where a two-model run keeps the landmark model's artifacts: a run folder of its own inside the run."""
    from .runfolder import landmark_run_dir

    return landmark_run_dir(out, second.name)


# What the landmark model's chain does not need (its SGIE is emitted with the detector's run folder).
LANDMARK_SKIPS = {
    "build-parser": "skipped: not needed: a landmark model's SGIE (network-type=100, output-tensor-meta=1) has no "
                    "custom parser; the contour component reads its tensors",
    "deepstream": "skipped: the SGIE config and the contour components are emitted with the detector's run folder",
}


def _run(recipe, out, options: RunOptions, stages: list[str], force: bool, tell, model: str = "") -> list[Step]:
    from .recipe import LANDMARK_FAMILIES

    steps = []
    Path(out).mkdir(parents=True, exist_ok=True)
    for stage in stages:
        if recipe.family in LANDMARK_FAMILIES and stage in LANDMARK_SKIPS:
            steps.append(Step(stage, False, LANDMARK_SKIPS[stage], model=model))
            tell("skip", steps[-1])
            continue
        rf = RunFolder(out)
        o = options.for_stage(stage, out)
        fp = stage_fingerprint(rf, recipe, stage, o)
        skip = None
        if not force and rf.is_fresh(stage, fp):
            skip = "up to date"
        else:
            ok, why = can_run(stage, options)
            skip = None if ok else why
        if skip:
            steps.append(Step(stage, False, skip, model=model))
            tell("skip", steps[-1])
            continue
        tell("start", Step(stage, True, "ran", model=model))
        t1 = time.perf_counter()
        result = _call(stage, recipe, out, o, force)
        steps.append(Step(stage, True, "ran", time.perf_counter() - t1, result, model=model))
        tell("done", steps[-1])
        RunFolder(out).mark_fresh(stage, fp)  # re-read: the stage itself has just rewritten the manifest
    return steps
