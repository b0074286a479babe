"""fbtool bench: a tiny run produces well-formed JSON, Markdown and PNG (no timing assertions)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("encode", [False, True])
def test_tiny_bench_writes_json_md_png(recipe, tmp_path, encode):
    from toolchain.bench import bench, write_report

    res = bench(recipe, backends=("torch",), device="cpu", frames=4, size=(320, 180), naive_frames=2, encode=encode,
                batch=2, clips=("classroom.gif",), log=lambda *_: None)
    paths = write_report(res, tmp_path, "tiny")
    data = json.loads(paths["json"].read_text())
    assert [r["kind"] for r in data["runs"]] == ["naive", "pipeline"]
    naive, pipe = data["runs"]
    assert naive["frames"] == 2 and pipe["frames"] == 4
    for r in data["runs"]:
        assert r["fps"] > 0 and r["latency_ms_p99"] >= r["latency_ms_p50"] > 0 and r["rss_peak_mb"] > 0
        assert r["gpu_peak_mb"] is None  # CPU run
    assert pipe["speedup_vs_naive"] == pytest.approx(pipe["fps"] / naive["fps"])
    assert {s["stage"] for s in pipe["stages"]} == {"decode", "preprocess", "infer", "post", "track", "blur", "encode"}
    assert pipe["bound_by"] in {s["stage"] for s in pipe["stages"]}
    assert data["settings"]["size"] == "320x180" and data["settings"]["encode"] is encode
    md = paths["md"].read_text()
    assert "| run | frames | frames/s |" in md and "naive torch-cpu fp32" in md and "| blur |" in md
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    import matplotlib.image as mpimg

    assert mpimg.imread(str(paths["png"])).ndim == 3


def test_bench_cli(tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import cli

    res = CliRunner().invoke(cli, ["bench", "--backends", "torch", "--frames", "2", "--naive-frames", "1", "--size",
                                   "160x90", "--no-encode", "-o", str(tmp_path), "--stem", "b"])
    assert res.exit_code == 0, res.output
    assert "bench: done" in res.output and (tmp_path / "b.json").is_file() and (tmp_path / "b.png").is_file()


def test_bench_rejects_bad_size():
    from toolchain.bench import parse_size
    from toolchain.errors import FbtoolError

    assert parse_size("1920x1080") == (1920, 1080)
    with pytest.raises(FbtoolError):
        parse_size("1080p")
