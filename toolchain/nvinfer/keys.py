"""The config checker: every key known, typed and in range for the target DeepStream version.

The key table is data (toolchain/data/nvinfer_keys.yaml): type, enum/range, required, since/removed
versions, and cross-key rules (e.g. network-type=3 needs cluster-mode=4). Used on every emission
and by `fbtool deepstream --check FILE`. It catches what DeepStream would only report at start-up on
the target host (or silently ignore: an unknown key in [property] is skipped with a warning).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import FbtoolError
from .keyfile import KeyFile, parse, parse_bool, split_list

TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "nvinfer_keys.yaml"
KINDS = ("nvinfer", "deepstream_app")
_INT = re.compile(r"^[+-]?\d+$")


@functools.lru_cache(maxsize=1)
def load_table() -> dict:
    return yaml.safe_load(TABLE_PATH.read_text())


def versions() -> tuple[str, ...]:
    return tuple(load_table()["versions"])


def _vt(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in str(v).split("."))


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    group: str
    key: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        key = f" {self.key}" if self.key else ""
        return f"{self.level}: {where}[{self.group}]{key}: {self.message}"


def convert(spec: dict, value: str):
    """Text -> typed value per the key's spec; raises ValueError with a reason."""
    t = spec["type"]
    if t == "int":
        if not _INT.match(value.strip()):
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    if t == "float":
        try:
            f = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if not math.isfinite(f):
            raise ValueError(f"{value!r} is not finite")
        return f
    if t == "bool":
        return parse_bool(value)
    if t in ("str", "path"):
        if not value:
            raise ValueError("is empty")
        return value
    if t.endswith("_list"):
        item = {"int_list": "int", "float_list": "float", "str_list": "str"}[t]
        return [convert({"type": item}, v) for v in split_list(value)]
    raise ValueError(f"unknown type {t} in the key table")


def _range_errors(spec: dict, typed) -> list[str]:
    errs = []
    items = typed if isinstance(typed, list) else [typed]
    if isinstance(typed, list) and "len" in spec:
        lo, hi = spec["len"]
        if not lo <= len(typed) <= hi:
            errs.append(f"needs {lo}{'' if lo == hi else f' to {hi}'} items, has {len(typed)}")
    for v in items:
        if isinstance(v, str):
            continue
        if "enum" in spec and v not in spec["enum"]:
            errs.append(f"value {v!r} is not one of {spec['enum']}" + (f" ({spec['note']})" if "note" in spec else ""))
        if "min" in spec and (v < spec["min"] or (spec.get("exclusive_min") and v == spec["min"])):
            errs.append(f"value {v!r} is below the minimum {spec['min']}{' (exclusive)' if spec.get('exclusive_min') else ''}")
        if "max" in spec and v > spec["max"]:
            errs.append(f"value {v!r} is above the maximum {spec['max']}")
    return errs


def _table_for(kind: str, group: str) -> dict | None:
    section = load_table()[kind]
    for pattern, table in section["group_patterns"].items():
        if re.fullmatch(pattern, group):
            return section["groups"][table]
    return None


def detect_kind(kf: KeyFile) -> str:
    if "property" in kf.groups:
        return "nvinfer"
    if {"primary-gie", "streammux", "application"} & set(kf.groups):
        return "deepstream_app"
    raise FbtoolError(f"{kf.source} is neither an nvinfer config ([property]) nor a deepstream-app config",
                      "give the file written by `fbtool deepstream`")


def check(kf: KeyFile, ds_version: str = "9.1", kind: str | None = None) -> list[Finding]:
    if ds_version not in versions():
        raise FbtoolError(f"DeepStream {ds_version} is not a target", f"choose one of {', '.join(versions())}")
    kind = kind or detect_kind(kf)
    section = load_table()[kind]
    target = _vt(ds_version)
    out: list[Finding] = []
    for g in section["required_groups"]:
        if g not in kf.groups:
            out.append(Finding("error", g, None, "group is required but missing"))
    typed: dict[str, dict[str, object]] = {}
    for group, entries in kf.groups.items():
        table = _table_for(kind, group)
        if table is None:
            out.append(Finding("error", group, None, "unknown group", kf.group_lines.get(group)))
            continue
        typed[group] = {}
        for key, entry in entries.items():
            spec = table.get(key)
            if spec is None:
                out.append(Finding("error", group, key, "unknown key (DeepStream ignores or rejects it)", entry.line))
                continue
            if "since" in spec and target < _vt(spec["since"]):
                out.append(Finding("error", group, key, f"needs DeepStream >= {spec['since']}, target is {ds_version}",
                                   entry.line))
            if "removed" in spec and target >= _vt(spec["removed"]):
                out.append(Finding("error", group, key, f"was removed in DeepStream {spec['removed']}"
                                   + (f": {spec['note']}" if "note" in spec else ""), entry.line))
            try:
                value = convert(spec, entry.value)
            except ValueError as exc:
                hint = " (GKeyFile has no inline comments)" if "#" in entry.value else ""
                out.append(Finding("error", group, key, f"expected {spec['type']}: {exc}{hint}", entry.line))
                continue
            typed[group][key] = value
            for msg in _range_errors(spec, value):
                out.append(Finding("error", group, key, msg, entry.line))
        for key, spec in table.items():
            if spec.get("required") and key not in entries:
                out.append(Finding("error", group, key, "required key is missing", kf.group_lines.get(group)))
    if kind == "nvinfer":
        out += _rules(section["rules"], typed.get("property", {}), kf)
    return out


def _matches(props: dict, cond: dict) -> bool:
    for k, want in cond.items():
        have = props.get(k)
        if have is None or (isinstance(have, bool) and have != bool(want)) or (
                not isinstance(have, bool) and have != want):
            return False
    return True


def _rules(rules: list[dict], props: dict, kf: KeyFile) -> list[Finding]:
    out = []
    line = kf.group_lines.get("property")
    for r in rules:
        level = r.get("level", "error")
        why = r.get("why", "")
        if "one_of" in r:
            if not any(k in props for k in r["one_of"]):
                out.append(Finding(level, "property", r["one_of"][0],
                                   f"one of {', '.join(r['one_of'])} is required: {why}", line))
            continue
        if "when" in r and not _matches(props, r["when"]):
            continue
        if "when_set" in r and r["when_set"] not in props:
            continue
        cond = ", ".join(f"{k}={v}" for k, v in r.get("when", {}).items()) or f"{r.get('when_set')} is set"
        for k in r.get("require", []):
            if k not in props:
                out.append(Finding(level, "property", k, f"required key is missing (when {cond}): {why}", line))
        for k, want in r.get("values", {}).items():
            if props.get(k) != want:
                got = props.get(k, "unset")
                out.append(Finding(level, "property", k, f"must be {want} when {cond}, got {got}: {why}", line))
        for k in r.get("forbid", []):
            if k in props:
                out.append(Finding(level, "property", k, f"should not be set when {cond}: {why}", line))
    return out


def check_file(path: str | Path, ds_version: str = "9.1", kind: str | None = None) -> list[Finding]:
    p = Path(path)
    if not p.is_file():
        raise FbtoolError(f"config file {p} does not exist", "give the path of a config written by `fbtool deepstream`")
    return check(parse(p.read_text(), str(p)), ds_version, kind)


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def ensure_valid(findings: list[Finding], source: str) -> None:
    bad = errors(findings)
    if bad:
        first = bad[0]
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        raise FbtoolError(f"{source}: [{first.group}] {first.key or ''}: {first.message}{more}".replace(" :", ":"),
                          "this is a bug in the config writer, or a hand edit; see `fbtool deepstream --check`")
