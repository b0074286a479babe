"""Static check of every TensorRT-touching module against the TensorRT 10 Python API.

scripts/typecheck_trt.sh installs the `tensorrt-stubs` wheel into .cache/trt-stubs (outside the import
path) and runs mypy on toolchain/trt/adapter.py, toolchain/engine/{build,calibrator}.py and toolchain/runners/tensorrt.py.
The second test proves the check has teeth: TensorRT 8 calls removed in TensorRT 10 are reported.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "typecheck_trt.sh"
SKIP_RC = 77  # the script's "stubs could not be obtained"


def _run(*files):
    r = subprocess.run(["bash", str(SCRIPT), *map(str, files)], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    if r.returncode == SKIP_RC:
        pytest.skip(f"tensorrt-stubs could not be obtained: {r.stderr.strip()[-200:]}")
    return r


def test_tensorrt_modules_typecheck_against_trt10_stubs():
    r = _run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no issues found in 4 source files" in r.stdout


def test_wrong_tensorrt_calls_are_caught(tmp_path):
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n\n\n"
        "def build(builder: trt.Builder, engine: trt.ICudaEngine) -> None:\n"
        "    config = builder.create_builder_config()\n"
        "    config.max_workspace_size = 1 << 30\n"  # TensorRT 8; use set_memory_pool_limit
        "    engine.get_binding_index('input')\n"  # TensorRT 8 bindings; use get_tensor_name
        "    config.set_flag(trt.BuilderFlag.FP17)\n"  # misspelt enum member
        "    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)\n"  # right: no error
    )
    r = _run(bad)
    assert r.returncode == 1, r.stdout + r.stderr
    assert '"IBuilderConfig" has no attribute "max_workspace_size"' in r.stdout
    assert '"ICudaEngine" has no attribute "get_binding_index"' in r.stdout
    assert 'has no attribute "FP17"' in r.stdout
    assert "Found 3 errors" in r.stdout
