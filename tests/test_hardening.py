"""Hardening (issue 17, docs/hardening.md): the cases that need no exported model.

Each test drives the CLI (or the one library call) the way the hostile case did and checks the
one-line error or the right result, and that nothing half-written is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from toolchain.cli import cli
from toolchain.errors import FbtoolError

REPO = Path(__file__).resolve().parent.parent


def invoke(*args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def one_line_error(res, code: int = 2, needle: str | None = None) -> str:
    out = res.output
    assert res.exit_code == code, out
    assert "Traceback" not in out, out
    err = [ln for ln in out.splitlines() if ln.startswith("Error: ")]
    assert len(err) == 1, out
    if needle is not None:
        assert needle.lower() in err[0].lower(), err[0]
    return err[0]


def recipe_dict() -> dict:
    from toolchain.recipe import load_recipe

    return json.loads(json.dumps(load_recipe().to_dict()))


def write_recipe(tmp_path: Path, fname: str = "r.yaml", **changes) -> Path:
    d = recipe_dict()
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            d[section][field] = value
        else:
            d[section] = value
    p = tmp_path / fname
    p.write_text(yaml.safe_dump(d))
    return p


# ---- 2, 3, 10, 18: the recipe ----------------------------------------------------------------------

@pytest.mark.parametrize("changes, field", [
    ({"labels": ["face\ntouch PWNED\n#"]}, "labels[0]"),
    ({"labels": [""]}, "labels[0]"),
    ({"labels": []}, "labels"),
    ({"name": "x$(touch${IFS}P)"}, "name"),
    ({"name": "../../../../escaped"}, "name"),
    ({"preprocess__mean": [float("nan"), 0.0, 0.0]}, "preprocess.mean"),
    ({"preprocess__scale": float("inf")}, "preprocess.scale"),
    ({"anchors__variance": [-0.1, 0.2]}, "anchors.variance"),
    ({"anchors__steps": [0, 16, 32]}, "anchors.steps"),
    ({"thresholds__pre_nms_top_k": -1}, "thresholds.pre_nms_top_k"),
    ({"thresholds__top_k": -5}, "thresholds.top_k"),
    ({"tolerances__box_px": -1.0}, "tolerances.box_px"),
    ({"tolerances__int8_f1": 1.5}, "tolerances.int8_f1"),
    ({"input__batch": {"min": 1, "opt": 4, "max": 100000}}, "input.batch"),
    ({"input__width": 1 << 20}, "input.width"),
])
def test_bad_recipe_values_are_refused_naming_the_field(tmp_path, changes, field):
    p = write_recipe(tmp_path, **changes)
    res = invoke("build-parser", "--recipe", p, "-o", tmp_path / "R")
    one_line_error(res, needle=f"'{field}'")
    assert not (tmp_path / "R").exists()


@pytest.mark.parametrize("levels", [8, 12])  # 8: few aliases (the str check stops it); 12: the alias limit
def test_yaml_alias_bomb_is_refused_quickly(tmp_path, levels):
    d = recipe_dict()
    del d["labels"]
    items = ["&a0 [" + ", ".join(["x"] * 10) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    p = tmp_path / "bomb.yaml"
    p.write_text(yaml.safe_dump(d) + "labels: [" + ", ".join(items) + "]\n")
    # A guard, not a timing assertion: before the fix this call ran for minutes and took gigabytes.
    res = subprocess.run([sys.executable, "-c", f"from toolchain.recipe import load_recipe; load_recipe({str(p)!r})"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 1 and "FbtoolError" in res.stderr and "labels" in res.stderr or "alias" in res.stderr, \
        res.stderr[-500:]


@pytest.mark.parametrize("content, needle", [(b"name: caf\xe9\n", "UTF-8"), (None, "folder")])
def test_unreadable_recipe_is_one_line(tmp_path, content, needle):
    p = tmp_path / "r.yaml"
    if content is None:
        p.mkdir()
    else:
        p.write_bytes(content)
    one_line_error(invoke("build-parser", "--recipe", p, "-o", tmp_path / "R"), needle=needle)


def test_blur_script_quotes_what_it_is_given(tmp_path, recipe):
    """Defence in depth: even a Recipe built in code with hostile name/labels (no recipe check) makes a
    script that runs no injected command. The script runs with a stub gst-launch-1.0 on PATH."""
    import dataclasses

    from toolchain.deepstream.app import blur_script

    hostile = dataclasses.replace(recipe, name="x$(touch${IFS}PWNED_NAME)`touch PWNED_TICK`",
                                  labels=("face\ntouch PWNED_LABEL\n#", "b'\"; touch PWNED_Q; #"))
    script = tmp_path / "ds" / "run_blur.sh"
    script.parent.mkdir()
    script.write_text(blur_script(hostile, "config_infer_primary_x.txt"))
    (script.parent / "libnvds_fbtool_dsblur.so").touch()  # the script stops early without its blur library
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "gst-launch-1.0").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_ARGS"\n')
    (stub / "gst-launch-1.0").chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "STUB_ARGS": str(tmp_path / "args.txt")}
    res = subprocess.run(["bash", str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert not list(work.iterdir()) and not list(script.parent.glob("PWNED*")), list(work.iterdir())
    args = (tmp_path / "args.txt").read_text().splitlines()
    assert f"location=fbtool_{hostile.name}_blurred.mp4" in args  # the literal name, not its expansion
    assert f"config-file-path={script.parent}/config_infer_primary_x.txt" in args


# ---- 6: the run-folder lock; lost updates -----------------------------------------------------------

def test_second_fbtool_on_a_run_folder_is_refused_with_the_pid(tmp_path):
    run = tmp_path / "R"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from toolchain.runfolder import acquire
            acquire({str(run)!r})
            print("locked", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = one_line_error(invoke("build-parser", "-o", run), needle="another fbtool is using this run folder")
        assert f"(pid {holder.pid})" in err
        from toolchain.runfolder import RunFolder

        with pytest.raises(FbtoolError, match="another fbtool"):  # the library refuses too
            RunFolder(run).record("x", {})
    finally:
        holder.communicate("\n", timeout=30)
    # Released: the next one runs, and the lock file does not stay behind.
    res = invoke("build-parser", "-o", run)
    assert res.exit_code == 0, res.output
    assert not (run / ".fbtool.lock").exists()


def test_record_keeps_what_another_stage_recorded_meanwhile(tmp_path):
    from toolchain.runfolder import RunFolder

    a, b = RunFolder(tmp_path), RunFolder(tmp_path)  # both read the empty manifest
    (tmp_path / "x.txt").write_text("x")
    (tmp_path / "y.txt").write_text("y")
    a.record("build-parser", {"lib": tmp_path / "x.txt"})
    b.record("calibrate", {"cache": tmp_path / "y.txt"})
    assert set(RunFolder(tmp_path).data["stages"]) == {"build-parser", "calibrate"}


# ---- 11, 15: the manifest and the artifacts it lists ------------------------------------------------

def _manifest(run: Path, stage: str, key: str, path: str, sha: str | None = None, **extra) -> None:
    run.mkdir(exist_ok=True)
    (run / "manifest.json").write_text(json.dumps(
        {"schema": 1, "stages": {stage: {"artifacts": {key: {"path": path, "sha256": sha}}, "info": {}, **extra}}}))


def test_manifest_path_outside_the_run_folder_is_refused(tmp_path):
    from toolchain.runfolder import RunFolder

    _manifest(tmp_path / "R", "export", "onnx", "../../../../../../etc/passwd")
    with pytest.raises(FbtoolError, match="outside the run folder"):
        RunFolder(tmp_path / "R").artifact("export", "onnx")
    one_line_error(invoke("deepstream", "-o", tmp_path / "R", "--ds-dir", tmp_path / "ds"), needle="outside")


def test_fifo_or_folder_artifact_is_refused_not_read(tmp_path):
    from toolchain.runfolder import RunFolder

    run = tmp_path / "R"
    _manifest(run, "export", "onnx", "model.onnx", "0" * 64)
    os.mkfifo(run / "model.onnx")
    # Reading a FIFO would block forever; the check must not open it.
    one_line_error(invoke("deepstream", "-o", run, "--ds-dir", tmp_path / "ds"), needle="FIFO")
    assert not RunFolder(run).intact("export")
    (run / "model.onnx").unlink()
    (run / "model.onnx").mkdir()
    one_line_error(invoke("deepstream", "-o", run, "--ds-dir", tmp_path / "ds"), needle="folder")
    rf = RunFolder(run)
    rf.data["chain"] = {"export": "fp"}
    assert not rf.is_fresh("export", "fp")


def test_changed_artifact_is_refused_by_a_standalone_stage(tmp_path):
    from toolchain.fsutil import sha256_file
    from toolchain.runfolder import RunFolder

    run = tmp_path / "R"
    run.mkdir()
    (run / "model.onnx").write_bytes(b"recorded")
    _manifest(run, "export", "onnx", "model.onnx", sha256_file(run / "model.onnx"))
    assert RunFolder(run).artifact("export", "onnx") == run / "model.onnx"
    (run / "model.onnx").write_bytes(b"changed!")
    one_line_error(invoke("deepstream", "-o", run, "--ds-dir", tmp_path / "ds"), needle="differs from the manifest")
    (run / "model.onnx").write_bytes(b"")
    one_line_error(invoke("deepstream", "-o", run, "--ds-dir", tmp_path / "ds"), needle="empty (0 bytes)")


@pytest.mark.parametrize("content, needle", [
    (b"[]", "not an fbtool manifest"), (b"{}", "not an fbtool manifest"),
    (b'{"stages": {"export": {"artifacts": []}}}', "malformed"),
    (b'{"stages": {"export": {"artifacts": {"onnx": "model.onnx"}}}}', "malformed"),
    (b'{"stages": {}, "x": "caf\xe9"}', "UTF-8"),
])
def test_bad_manifest_is_one_line(tmp_path, content, needle):
    run = tmp_path / "R"
    run.mkdir()
    (run / "manifest.json").write_bytes(content)
    one_line_error(invoke("build-parser", "-o", run), needle=needle)


def test_non_utf8_config_check_is_one_line(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"[property]\nlabelfile-path=caf\xe9\n")
    one_line_error(invoke("deepstream", "--check", p, "-o", tmp_path / "R"), needle="UTF-8")


# ---- 9: a failed validate is never up to date -------------------------------------------------------

def test_failed_standalone_validate_is_redone_by_run(tmp_path):
    from toolchain.runfolder import RunFolder

    run = tmp_path / "R"
    (tmp_path / "R").mkdir()
    (run / "report.json").write_text("{}")
    rf = RunFolder(run)
    rf.record("validate", {"report_json": run / "report.json"}, {"passed": True})
    RunFolder(run).mark_fresh("validate", "fp")
    assert RunFolder(run).is_fresh("validate", "fp")
    # A standalone validate that fails records passed=False (and forgets run's fingerprint).
    RunFolder(run).record("validate", {"report_json": run / "report.json"}, {"passed": False})
    RunFolder(run).mark_fresh("validate", "fp")  # even where the fingerprint survived
    assert not RunFolder(run).is_fresh("validate", "fp")


def test_standalone_stage_forgets_runs_fingerprint(tmp_path):
    from toolchain.runfolder import RunFolder

    (tmp_path / "a").write_text("a")
    RunFolder(tmp_path).record("export", {"onnx": tmp_path / "a"})
    RunFolder(tmp_path).mark_fresh("export", "fp")
    RunFolder(tmp_path).record("export", {"onnx": tmp_path / "a"})
    assert "export" not in RunFolder(tmp_path).data.get("chain", {})


# ---- 5, 19, 26: the parser library ------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["with space", "colon:x", "semi;colon"])
def test_build_parser_in_a_run_folder_with_make_hostile_characters(tmp_path, folder):
    run = tmp_path / folder / "R"
    res = invoke("build-parser", "-o", run)
    assert res.exit_code == 0, res.output
    assert (run / "parser" / "libnvdsinfer_fbtool.so").is_file()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_truncated_parser_library_is_rebuilt_not_reused(tmp_path):
    run = tmp_path / "R"
    assert invoke("build-parser", "-o", run).exit_code == 0
    lib = run / "parser" / "libnvdsinfer_fbtool.so"
    size = lib.stat().st_size
    os.truncate(lib, size // 2)
    # The harness refuses it before dlopen (a truncated mapping dies with SIGBUS): checked in a child
    # process so that a regression kills the child, not pytest.
    code = ("from toolchain.nvinfer.harness import ParserHarness as H; import sys; p = sys.argv[1]; "
            "H((p + '/libnvdsinfer_fbtool.so', p + '/libfbtool_harness.so'))")
    res = subprocess.run([sys.executable, "-c", code, str(run / "parser")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 1 and "differs from the library fbtool built" in res.stderr, (res.returncode, res.stderr)
    res = invoke("build-parser", "-o", run)
    assert res.exit_code == 0 and "(rebuilt)" in res.output, res.output
    assert lib.stat().st_size == size


def test_run_force_rebuilds_the_parser(tmp_path):
    run = tmp_path / "R"
    assert invoke("run", "-o", run, "--from", "build-parser", "--to", "build-parser").exit_code == 0
    res = invoke("run", "-o", run, "--from", "build-parser", "--to", "build-parser", "--force")
    assert res.exit_code == 0, res.output
    assert "(rebuilt)" in res.output, res.output
    assert "report.html" not in res.output  # 25: run does not name a report it did not write


def _ends(pid: int, patience_s: float = 60.0) -> bool:
    """True once `pid` has exited (gone, or a zombie); SIGKILL is delivered asynchronously. The
    patience is a guard against hanging, not a timing assertion."""
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < patience_s:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_interrupted_make_takes_its_compilers_with_it(tmp_path, monkeypatch):
    from toolchain.parser import build

    marker = tmp_path / "child.pid"
    real = subprocess.Popen.communicate

    def interrupted(self, *a, **kw):
        while not marker.exists() or not marker.read_text().strip():
            pass
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build._run_make(["sh", "-c", f"sleep 300 & echo $! > {marker}; wait"])
    monkeypatch.setattr(subprocess.Popen, "communicate", real)
    # The grandchild (what g++ is to make) is gone: reaped by init or a zombie at most.
    assert _ends(int(marker.read_text()))


# ---- 20: stale temporaries --------------------------------------------------------------------------

def test_next_run_removes_what_a_killed_run_left(tmp_path):
    run = tmp_path / "R"
    (run / "calib").mkdir(parents=True)
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    stale = [run / f".model.onnx.{dead}.abcd1234.part.onnx", run / ".report.html.k2j3h4g5.part.html",
             run / "calib" / f".stats.npz.{dead}.zz99aa11.part.npz"]
    for p in stale:
        p.write_bytes(b"x" * 10)
    (run / f".parser-{dead}-qwerty").mkdir()
    (run / f".parser-old-{dead}").mkdir()
    live = run / f".model.onnx.{os.getpid()}.abcd1234.part.onnx"  # a writer still at work
    live.write_bytes(b"x")
    keep = run / "notes.part.txt"
    keep.write_text("user file")
    assert invoke("build-parser", "-o", run).exit_code == 0
    left = {p.name for p in run.rglob("*")}
    assert not any(p.name in left for p in stale), left
    assert not any(n.startswith(".parser-") for n in left), left
    assert live.exists() and keep.exists()


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    """SIGTERM during build-parser: exit 143 with one line, no staging folder, no make left."""
    run = tmp_path / "R"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CXX": str(tmp_path / "slowcxx")}
    # `--version` answers at once (build-parser asks it first, outside make); the compile make starts hangs
    (tmp_path / "slowcxx").write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && {{ echo slowcxx 1; exit 0; }}\n"
                                      f"echo $$ > {tmp_path}/cxx.pid\nexec sleep 300\n")
    (tmp_path / "slowcxx").chmod(0o755)
    p = subprocess.Popen([sys.executable, "-c", "import sys; from toolchain.cli import main; main(sys.argv[1:])",
                          "build-parser", "-o", str(run)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pidfile = tmp_path / "cxx.pid"
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 143, (out, err)
    assert "Traceback" not in err and "Error: terminated" in err
    assert _ends(int(pidfile.read_text()))
    assert not (run / "parser").exists() and not list(run.glob(".parser-*"))


# ---- 13, 14, 21, 24, 25, 27: one line for every bad input -------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage-not-a-protobuf" * 50])
def test_corrupt_onnx_given_by_path_is_one_line(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    one_line_error(invoke("surgery", "--lint-only", "--onnx", p, "-o", tmp_path / "R"))


def test_output_parent_is_a_file_is_one_line(tmp_path):
    (tmp_path / "F").write_text("a file")
    one_line_error(invoke("build-parser", "-o", tmp_path / "F" / "R"), needle="F")
    one_line_error(invoke("build-parser", "-o", tmp_path / "F"), needle="is a file")


@pytest.mark.parametrize("errno_name, needle", [("EROFS", "read-only"), ("ENOSPC", "disk is full"),
                                                ("EISDIR", "folder")])
def test_environment_errors_become_one_line(monkeypatch, tmp_path, errno_name, needle):
    """Read-only folders and full disks cannot be made here as root on a 2-core CI box; the failure
    is raised where fbtool writes (the atomic temp file) and must come out as one line."""
    import errno

    from toolchain import fsutil

    def failing(*a, **kw):
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)), str(tmp_path / "x"))

    monkeypatch.setattr(fsutil.tempfile, "mkstemp", failing)
    one_line_error(invoke("build-parser", "-o", tmp_path / "R"), needle=needle)


def test_weights_folder_empty_file_and_bad_cache(tmp_path, monkeypatch, recipe):
    import dataclasses
    import hashlib

    from toolchain.weights import cache_dir, load_state_dict, resolve_weights

    with pytest.raises(FbtoolError, match="is a folder"):
        resolve_weights(recipe.weights, explicit=tmp_path)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    spec = dataclasses.replace(recipe.weights, sha256=hashlib.sha256(b"").hexdigest(), file="empty.pth")
    with pytest.raises(FbtoolError, match="empty"):
        resolve_weights(spec, explicit=empty)
    with pytest.raises(FbtoolError, match="could not be read"):
        load_state_dict(empty)  # the error path itself must not crash on an empty message
    # 27: a corrupt cache entry does not hide the mirror's good copy.
    monkeypatch.setenv("FBTOOL_CACHE", str(tmp_path / "cache"))
    bad = cache_dir() / recipe.weights.sha256[:16] / recipe.weights.file
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"corrupt")
    got = resolve_weights(recipe.weights, download=False)
    assert got != bad and got.is_file()


def test_export_weights_folder_is_one_line(tmp_path):
    one_line_error(invoke("export", "--weights", tmp_path, "-o", tmp_path / "R"), needle="is a folder")


def test_validate_into_an_empty_folder_writes_nothing(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    one_line_error(invoke("validate", "-o", out), needle="no candidate could run")
    assert list(out.iterdir()) == []
    one_line_error(invoke("validate", "-o", tmp_path / "new"), needle="no candidate could run")
    assert not (tmp_path / "new").exists()
