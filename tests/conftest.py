"""Shared fixtures: the default recipe, real frames from ../shared/media, a session-wide export."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def pytest_configure(config):
    os.environ.setdefault("FBTOOL_CACHE", str(REPO / ".cache"))


@pytest.fixture(scope="session")
def recipe():
    from toolchain.recipe import load_recipe

    return load_recipe()


@pytest.fixture(scope="session")
def torch_runner(recipe):
    from toolchain.runners import TorchRunner

    return TorchRunner(recipe)


@pytest.fixture(scope="session")
def classroom_frame():
    from toolchain.media import read_frames

    return read_frames("classroom.gif", max_frames=1)[0]


@pytest.fixture(scope="session")
def headpose_frame():
    from toolchain.media import read_frames

    return read_frames("head-pose-face-detection-female-and-male.gif", max_frames=1)[0]


@pytest.fixture(scope="session")
def exported(tmp_path_factory, recipe):
    """One dynamo export of the default model shared by the whole session: (run folder, info)."""
    from toolchain.export import export

    out = tmp_path_factory.mktemp("run")
    info = export(recipe, out)
    return out, info


@pytest.fixture(scope="session")
def onnx_path(exported):
    return exported[0] / "model.onnx"


@pytest.fixture
def fresh_run(exported, tmp_path):
    """A run folder of the test's own holding a copy of the session's export (other tests add stages
    to `exported`, so tests that record stages start from this)."""
    import shutil

    from toolchain.runfolder import RunFolder

    src, info = exported
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(src / "model.onnx", out / "model.onnx")
    RunFolder(out).record("export", {"onnx": out / "model.onnx"}, info)
    return out
