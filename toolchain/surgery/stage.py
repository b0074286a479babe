"""`fbtool surgery`: the run folder's exported ONNX -> passes -> TensorRT lint -> parity -> artifact.

The surgered file is only renamed into place when onnx.checker, the lint and the parity check on
real frames all pass. The manifest records the passes, node counts (before/after, per pass),
the lint summary and the parity figures.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import cast

from ..errors import FbtoolError
from ..fsutil import atomic_path
from ..recipe import Recipe, Surgery
from ..runfolder import EXPORT_ONNX, RunFolder, fingerprint
from .registry import pass_names, run_passes
from .trt_lint import TABLE, LintReport, lint_path

DEFAULT_NAME = "model.surgery.onnx"


def source_onnx(out, onnx: str | Path | None = None) -> Path:
    if onnx is not None:
        p = Path(onnx)
        if not p.is_file():
            raise FbtoolError(f"ONNX file {p} does not exist", "check --onnx")
        return p
    return cast(Path, RunFolder(out).get(EXPORT_ONNX, required=True))  # required: raises rather than None


def lint_only(out, onnx: str | Path | None = None) -> tuple[Path, LintReport]:
    """Lint --onnx, else the run folder's surgered graph, else its export."""
    if onnx is None:
        onnx = RunFolder(out).model_onnx()
    path = Path(onnx)
    return path, lint_path(path)


def surgery(recipe: Recipe, out, onnx: str | Path | None = None, names: list[str] | None = None,
            settings: Surgery | None = None, lint: bool = True, check: bool = True,
            name: str = DEFAULT_NAME) -> dict:
    import onnx as onnx_lib

    t0 = time.perf_counter()
    settings = settings or recipe.surgery
    names = list(names) if names else pass_names(settings)
    src = source_onnx(out, onnx)
    run = RunFolder(out)
    target = run.file(name)
    if target.resolve() == src.resolve():
        raise FbtoolError(f"the surgery output {target} would overwrite its input", "give another --name")
    model = onnx_lib.load(str(src))
    new, report = run_passes(model, recipe, names, settings)
    try:
        onnx_lib.checker.check_model(new, full_check=True)
    except Exception as exc:
        raise FbtoolError(f"the surgered graph fails onnx.checker: {str(exc).splitlines()[0][:160]}",
                          "run the passes one by one (--passes) to find the culprit") from None
    from .io_names import layout_metadata
    from .trt_lint import lint_model

    lint_report = lint_model(new)
    if lint:
        lint_report.check("the surgered graph")
    layout = layout_metadata(new, recipe)
    info: dict = {"source": str(src), "passes": names, "settings": dataclasses.asdict(settings),
                  "nodes_before": report.nodes_before, "nodes_after": report.nodes_after,
                  "per_pass": report.rows, "output_layout": layout["output_layout"], "outputs": layout["outputs"],
                  "lint": lint_report.summary()}
    with atomic_path(target) as tmp:
        onnx_lib.save(new, str(tmp))
        if check:
            from .parity import check_parity, judge

            parity = check_parity(src, tmp, recipe, settings, layout["output_layout"])
            judge(parity, recipe)
            info["parity"] = {"max_abs": parity["max_abs"], "faces": parity["faces"]}
    info["seconds"] = round(time.perf_counter() - t0, 2)
    info["bytes"] = target.stat().st_size
    run.record("surgery", {"onnx": target}, info,
               inputs=fingerprint(recipe.hash, src, names, dataclasses.asdict(settings), TABLE), recipe=recipe)
    return info
