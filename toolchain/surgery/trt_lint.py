"""TensorRT 10 compatibility lint: every op and data type of a graph against the ONNX-TensorRT table.

The table is data (toolchain/data/trt10_onnx_ops.yaml, from onnx-tensorrt's docs/operators.md):
supported ops with the types they take, the ops listed as unsupported, the opset range, and the
restrictions that can be checked statically (constant operands, attribute values, unused outputs).
No TensorRT is needed; a finding names the node, the op and the reason. This is a static check:
TensorRT's own parser (fbtool build) stays the final word.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FbtoolError

TABLE = Path(__file__).resolve().parent.parent / "data" / "trt10_onnx_ops.yaml"

# ONNX TensorProto elem_type -> the table's type names.
TYPE_NAMES = {1: "FP32", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING",
              9: "BOOL", 10: "FP16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
              15: "COMPLEX128", 16: "BF16", 17: "FP8", 18: "FP8", 19: "FP8", 20: "FP8", 21: "UINT4",
              22: "INT4", 23: "FP4"}


@dataclass(frozen=True)
class Finding:
    node: str
    op: str
    reason: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op}): {self.reason}"


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)
    opset: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def check(self, what: str = "the graph") -> None:
        """Raise FbtoolError naming the first offending node (and how many more there are)."""
        if self.ok:
            return
        first, more = self.errors[0], len(self.errors) - 1
        raise FbtoolError(f"{what} will not parse in TensorRT 10: {first}"
                          + (f" (and {more} more finding(s))" if more else ""),
                          "run `fbtool surgery --lint-only` for the full list; change the export or add a pass")

    def summary(self) -> dict:
        return {"ok": self.ok, "errors": [str(f) for f in self.errors], "opset": self.opset,
                "ops": dict(sorted(self.ops.items()))}


@functools.lru_cache(maxsize=4)
def load_table(path: str | None = None) -> dict:
    import yaml

    data = yaml.safe_load(Path(path or TABLE).read_text())
    typed = data.get("typed_operands", {})
    data["_operands"] = {op: key for key, ops in typed.items() for op in ops}
    return data


def _dtype_map(model) -> dict[str, int]:
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
        pass  # lint what we can from the declared types
    types: dict[str, int] = {}
    g = model.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def _constants(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    vals = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    vals[node.output[0]] = numpy_helper.to_array(a.t)
    return vals


def _attr(node, name):
    import onnx

    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return None


def _operands(node, kind: str | None) -> list[tuple[str, str]]:
    ins = [("input", n) for n in node.input if n]
    if kind == "inputs_all":
        return ins
    if kind == "inputs_01":
        return ins[:2]
    if kind == "inputs_12":
        return [("input", n) for n in list(node.input)[1:3] if n]
    if kind == "outputs_0":
        return [("output", node.output[0])] + ([ins[0]] if ins and node.op_type in ("Cast", "CastLike") else [])
    if kind == "none":
        return []
    return ins[:1]


def _check_restrictions(node, rule: dict, consts: dict, used: set[str]) -> list[str]:
    why = rule.get("why", "")
    bad = []
    for i in rule.get("constant_inputs", []):
        if i < len(node.input) and node.input[i] and node.input[i] not in consts:
            bad.append(f"input {i} ('{node.input[i]}') must be a build-time constant ({why})")
    for i, bound in (rule.get("max_const") or {}).items():
        i = int(i)
        if i < len(node.input) and node.input[i] in consts and np.any(consts[node.input[i]] >= bound):
            bad.append(f"input {i} = {consts[node.input[i]].tolist()} must be below {bound} ({why})")
    for name, spec in (rule.get("attrs") or {}).items():
        v = _attr(node, name)
        v = spec.get("default") if v is None else v
        if v not in spec["allowed"]:
            bad.append(f"attribute {name}={v!r} is not supported (allowed: {spec['allowed']}; {why})")
    for name in rule.get("all_ones", []):
        v = _attr(node, name)
        if v is not None and any(x != 1 for x in v):
            bad.append(f"attribute {name}={list(v)} must be all ones ({why})")
    n_out = rule.get("max_outputs")
    if n_out is not None:
        extra = [o for o in list(node.output)[n_out:] if o and o in used]
        if extra:
            bad.append(f"output(s) {extra} are used but TensorRT only produces the first {n_out} ({why})")
    return bad


def lint_model(model, table: dict | None = None) -> LintReport:
    """Check a ModelProto against the table; never raises for a finding (see LintReport.check)."""
    t = table or load_table()
    report = LintReport()
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    report.opset = opset
    lo, hi = t["opset"]["min"], t["opset"]["max"]
    if not lo <= opset <= hi:
        report.findings.append(Finding("<model>", "opset", f"opset {opset} is outside TensorRT 10's {lo}..{hi}"))
    types, consts = _dtype_map(model), _constants(model)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    ops, unsupported, operands = t["ops"], set(t["unsupported"]), t["_operands"]
    for node in g.node:
        name, op = node.name or (node.output[0] if node.output else "?"), node.op_type
        report.ops[op] = report.ops.get(op, 0) + 1
        if node.domain not in ("", "ai.onnx"):
            report.findings.append(Finding(name, op, f"custom domain '{node.domain}' needs a TensorRT plugin"))
            continue
        if op in unsupported:
            report.findings.append(Finding(name, op, "listed as not supported by the ONNX-TensorRT parser"))
            continue
        if op not in ops:
            report.findings.append(Finding(name, op, "not in TensorRT 10's ONNX operator table"))
            continue
        allowed = ops[op]
        for kind, tensor in _operands(node, operands.get(op)):
            ty = TYPE_NAMES.get(types.get(tensor, 0))
            if ty and ty not in allowed:
                report.findings.append(Finding(name, op, f"{kind} '{tensor}' is {ty}; TensorRT 10 runs {op} on "
                                                         f"{', '.join(allowed)} only"))
        rule = t.get("restrictions", {}).get(op)
        for reason in _check_restrictions(node, rule, consts, used) if rule else []:
            report.findings.append(Finding(name, op, reason))
    for kind, vis in (("input", g.input), ("output", g.output)):
        for vi in vis:
            ty = TYPE_NAMES.get(vi.type.tensor_type.elem_type)
            if ty and ty not in t["io_types"]:
                report.findings.append(Finding("<model>", f"graph {kind}",
                                               f"'{vi.name}' is {ty}; TensorRT network I/O takes "
                                               f"{', '.join(t['io_types'])}"))
    return report


def lint_path(path: str | Path) -> LintReport:
    import onnx

    p = Path(path)
    if not p.is_file():
        raise FbtoolError(f"ONNX file {p} does not exist", "give --onnx PATH or run `fbtool export` first")
    return lint_model(onnx.load(str(p)))
