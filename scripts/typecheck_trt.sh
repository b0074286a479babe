#!/usr/bin/env bash
# Type-check every TensorRT-touching module against the TensorRT 10 Python API (tensorrt-stubs).
#
# No machine here can install TensorRT, so a wrong call (`config.max_workspace_size = 1`,
# `engine.get_binding_index(...)`, a misspelt enum) would only show up on the user's GPU. The
# `tensorrt-stubs` wheel on PyPI (pybind11-stubgen output of the real bindings) lets mypy catch it.
# The stubs go to a folder OUTSIDE the import path (.cache/trt-stubs, $FBTOOL_TRT_STUBS), found by
# mypy through MYPYPATH only, so `import tensorrt` still fails at run time here, as it must.
# The generated stubs need small syntax fixes (parameters named `in`, a required parameter after a
# defaulted one, a missing import, `bool` shadowed by trt.bool); they are scripted below.
#
# Usage: scripts/typecheck_trt.sh [FILE...]   (default: the TensorRT-touching modules)
# Exit: 0 clean, 1 type errors, 77 stubs could not be obtained (no index reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STUBS_VERSION=${TRT_STUBS_VERSION:-10.13.0.35.1}
STUBS=${FBTOOL_TRT_STUBS:-.cache/trt-stubs}
MARK="$STUBS/.fbtool-$STUBS_VERSION"

if [ ! -f "$MARK" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if ! $PY -m pip download -q --no-deps "tensorrt-stubs==$STUBS_VERSION" -d "$tmp" >"$tmp/pip.log" 2>&1; then
    echo "typecheck_trt: cannot download tensorrt-stubs==$STUBS_VERSION:" >&2
    tail -n 3 "$tmp/pip.log" >&2
    exit 77
  fi
  $PY - "$tmp" "$STUBS" <<'EOF'
import ast, pathlib, re, shutil, sys, zipfile

tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("tensorrt_stubs-*.whl"))
zipfile.ZipFile(wheel).extractall(tmp / "x")
if dest.exists():
    shutil.rmtree(dest)
dest.mkdir(parents=True)
for pkg in ("tensorrt", "tensorrt_bindings"):
    shutil.copytree(tmp / "x" / pkg, dest / pkg)


def split_params(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        depth += ch in "[(" and 1 or (-1 if ch in "])" else 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def fix_def(line):
    line = re.sub(r"\bin: ", "in_: ", line)  # `in` is a keyword
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not m or "=" not in m.group(2):
        return line
    seen, new = False, []
    for a in split_params(m.group(2)):  # a required parameter after a defaulted one gets `= ...`
        s = a.strip()
        if "=" in s:
            seen = True
        elif seen and s and not s.startswith("*") and s != "/":
            a += " = ..."
        new.append(a)
    return m.group(1) + ",".join(new) + m.group(3)


for p in dest.rglob("*.pyi"):
    out = []
    for line in p.read_text().splitlines():
        if line.strip() == "import tensorrt_libs as tensorrt_libs":
            continue  # a runtime-only package, no stubs
        if line.lstrip().startswith("def "):
            line = fix_def(line)
        if not line.startswith("bool:"):  # the module's `bool: DataType` shadows the builtin in annotations
            line = re.sub(r"(?<![\w.\"'])bool(?![\w\"'])", "builtins.bool", line) if ("->" in line or ": " in line) else line
        out.append(line)
    text = "\n".join(out) + "\n"
    text = text.replace("from __future__ import annotations\n",
                        "from __future__ import annotations\nimport builtins\nimport typing_extensions\n"
                        "from typing import Any as capsule\n", 1)
    ast.parse(text, str(p))  # every fix must leave valid Python
    p.write_text(text)
EOF
  touch "$MARK"
fi

if [ $# -gt 0 ]; then
  files=("$@")
else
  files=(toolchain/trt/adapter.py toolchain/engine/build.py toolchain/engine/calibrator.py
         toolchain/runners/tensorrt.py)
fi

cfg=$(mktemp)
cat >"$cfg" <<'EOF'
[mypy]
python_version = 3.11
follow_imports = silent
ignore_missing_imports = True
warn_unused_ignores = False
check_untyped_defs = True
# The generated stubs have internal inconsistencies; their errors are not ours.
[mypy-tensorrt.*]
ignore_errors = True
[mypy-tensorrt_bindings.*]
ignore_errors = True
EOF
set +e
MYPYPATH="$STUBS" $PY -m mypy --config-file "$cfg" --cache-dir .cache/mypy-trt "${files[@]}"
rc=$?
rm -f "$cfg"
exit $rc
