"""`fbtool export`: PyTorch -> ONNX with a dynamic batch axis, metadata, and a parity check.

Exporter: torch.onnx's dynamo exporter (torch.export + onnxscript) at opset 18 by default. It is the
exporter PyTorch maintains (the TorchScript one is deprecated), and for these models it emits a
graph with no Shape/Gather/Unsqueeze chains (126 nodes vs 200 for the default model), which
TensorRT 10.3's ONNX parser (DeepStream 7.1) takes as is. `exporter="torchscript"` stays available.
Parity is checked at export time: onnxruntime vs PyTorch on real frames at batch 1 and batch 4;
the ONNX file is only renamed into place when every output is within the recipe's tolerance.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FbtoolError
from .fsutil import atomic_path, sha256_file
from .onnx_meta import recipe_metadata, set_metadata
from .recipe import Recipe
from .runfolder import RunFolder, fingerprint

EXPORTERS = ("dynamo", "torchscript")


@dataclass
class ParityReport:
    rows: list[dict] = field(default_factory=list)  # one per (batch, output)

    @property
    def max_abs(self) -> float:
        return max((r["max_abs"] for r in self.rows), default=0.0)

    def failures(self, recipe: Recipe) -> list[dict]:
        from .compare.policy import tensor_limit

        return [dict(r, limit=tensor_limit(recipe, r["output"])) for r in self.rows
                if not r["max_abs"] <= tensor_limit(recipe, r["output"])]

    def table(self) -> str:
        lines = [f"{'batch':>5}  {'output':<10} {'max abs':>10} {'of range':>9}"]
        for r in self.rows:
            lines.append(f"{r['batch']:>5}  {r['output']:<10} {r['max_abs']:>10.2e} {r['of_range']:>9.1e}")
        return "\n".join(lines)


def compare_outputs(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], batch: int) -> list[dict]:
    from .compare.metrics import output_errors

    return [{"batch": batch, "output": name, "max_abs": st["max_abs"], "max_rel": st["max_rel"],
             "range": st["range"], "of_range": st["of_range"], "finite": st["finite"]}
            for name, st in output_errors(ref, cand, "the ONNX").items()]


def check_parity(onnx_path: Path, recipe: Recipe, torch_runner, batches=(1, 4)) -> ParityReport:
    from .contours import model_inputs
    from .runners import OrtRunner

    ort_runner = OrtRunner(onnx_path)
    xs = model_inputs(recipe, max(batches))  # frames; face crops for a landmark model
    report = ParityReport()
    for b in batches:
        feed = {recipe.input.name: xs[:b]}
        report.rows += compare_outputs(torch_runner.infer(feed), ort_runner.infer(feed), b)
    return report


@contextlib.contextmanager
def _restore_level(logger, level):
    try:
        yield
    finally:
        logger.setLevel(level)


def _torch_export(model, recipe: Recipe, path: Path, exporter: str, opset: int) -> None:
    import torch

    inp, o = recipe.input, recipe.outputs
    names = o.names
    dummy = torch.zeros(max(2, inp.batch.opt), inp.channels, inp.height, inp.width)
    sink = io.StringIO()
    # The exporter's registry logs "torchvision is not installed. Skipping torchvision::nms" (and 3 more)
    # through `logging`, which redirect_stderr does not catch: fbtool never uses torchvision ops, so the
    # user can do nothing about them. Raise that one logger's level for the export only.
    reg_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = reg_log.level
    reg_log.setLevel(logging.ERROR)
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), _restore_level(reg_log, level):
        if exporter == "dynamo":
            dim = torch.export.Dim("batch", min=1, max=max(inp.batch.max, 2))
            shape = {0: dim}
            if inp.dynamic_hw:
                stride = max(recipe.anchors.steps) if recipe.anchors else 32
                shape[2] = stride * torch.export.Dim("h32", min=1, max=4096 // stride)
                shape[3] = stride * torch.export.Dim("w32", min=1, max=4096 // stride)
            torch.onnx.export(model, (dummy,), str(path), dynamo=True, opset_version=opset,
                              input_names=[inp.name], output_names=names, dynamic_shapes=(shape,),
                              optimize=True, external_data=False)
        else:
            axes = {inp.name: {0: "batch"}}
            if inp.dynamic_hw:
                axes[inp.name].update({2: "height", 3: "width"})
            axes.update({n: {0: "batch"} for n in names})
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset,
                              input_names=[inp.name], output_names=names, dynamic_axes=axes,
                              do_constant_folding=True)


def _finish_model(path: Path, recipe: Recipe, weights_sha: str, extra: dict) -> int:
    """Names, metadata, checker, shape inference. Returns the node count."""
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "batch"
    model.producer_name = "fbtool"
    model.doc_string = f"{recipe.name}: exported by fbtool from {recipe.weights.file}"
    set_metadata(model, recipe_metadata(recipe, weights_sha, extra))
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:
        raise FbtoolError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0][:160]}",
                          "try --exporter torchscript") from None
    onnx.save(model, str(path))
    return len(model.graph.node)


def export(recipe: Recipe, out: str | Path, weights=None, exporter: str = "dynamo", opset: int | None = None,
           check: bool = True, name: str = "model.onnx") -> dict:
    """Export the recipe's model into the run folder `out`. Returns the manifest info."""
    from .runners import TorchRunner
    from .weights import resolve_weights

    if exporter not in EXPORTERS:
        raise FbtoolError(f"unknown exporter {exporter!r}", f"choose one of {', '.join(EXPORTERS)}")
    opset = opset or recipe.opset  # the recipe's opset is the opset written, for either exporter
    t0 = time.perf_counter()
    weights_path = resolve_weights(recipe.weights, weights)
    weights_sha = sha256_file(weights_path)
    runner = TorchRunner(recipe, weights_path)
    run = RunFolder(out)
    target = run.file(name)
    info: dict = {"exporter": exporter, "opset": opset}
    from .progress import steps

    with steps("export", 3 if check else 2) as step, atomic_path(target) as tmp:
        step(f"torch.onnx {exporter} export, opset {opset}")
        _torch_export(runner.model, recipe, tmp, exporter, opset)
        step("onnx.checker + shape inference")
        info["nodes"] = _finish_model(tmp, recipe, weights_sha, {"exporter": exporter, "opset": opset})
        if check:
            step("parity vs PyTorch on real frames (batch 1, 4)")
            report = check_parity(tmp, recipe, runner)
            from .compare.policy import tensor_limit

            info["parity"] = [dict(r, limit=tensor_limit(recipe, r["output"])) for r in report.rows]
            bad = report.failures(recipe)
            if bad:
                w = bad[0]
                raise FbtoolError(
                    f"ONNX differs from PyTorch on output '{w['output']}' at batch {w['batch']}: "
                    f"max abs {w['max_abs']:.2e} > {w['limit']:.0e}",
                    "no file was written; try --exporter torchscript or another --opset")
    info["seconds"] = round(time.perf_counter() - t0, 2)
    info["bytes"] = target.stat().st_size
    run.record("export", {"onnx": target}, info,
               inputs=fingerprint(recipe.hash, weights_sha, exporter, opset), recipe=recipe)
    return info
