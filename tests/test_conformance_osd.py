"""nvdsosd's own property code (gst_nvds_osd_set_property, PROP_BLUR_GIE_CLASS_IDS, compiled from the
DeepStream 9.1 sources) reads the blur app's blur-on-gie-class-ids as (gie, class) pairs that name the
pipeline's nvinfer and a real class. gst_nvds_osd_transform_ip reads index 0 as the gie and index 1 as
the class, and copies the objects' masks only in that branch."""

from __future__ import annotations

import re
import shutil

import pytest

from toolchain.nvinfer import conformance

pytestmark = pytest.mark.skipif(conformance.missing_reason() is not None,
                                reason=f"NVIDIA's DeepStream code cannot be built here: {conformance.missing_reason()}")


def test_nvdsosd_reads_the_emitted_blur_ids_as_gie_class_pairs(exported, recipe, tmp_path):
    from toolchain.deepstream import emit
    from toolchain.runfolder import RunFolder

    src_run, info = exported
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(src_run / "model.onnx", run / "model.onnx")
    RunFolder(run).record("export", {"onnx": run / "model.onnx"}, info)
    out = emit(recipe, run, ds_dir=tmp_path / "ds", ds_version="9.1")
    script = (tmp_path / "ds" / f"run_blur_{recipe.name}.sh").read_text()
    value = re.search(r'BLUR_IDS="\$\{BLUR_IDS:-([^}]*)\}"', script).group(1)
    nv, _ = conformance.parse_nvinfer_config(out["files"]["infer_config"])
    entries = conformance.parse_blur_ids(value)
    assert entries, value
    for e in entries:
        assert len(e) == 2, f"{value!r}: nvdsosd reads the class id past the end of {e}"
        gie, cls = e
        assert gie == nv["uniqueID"]
        assert 0 <= cls < nv["numDetectedClasses"]
    assert sorted(c for _, c in entries) == list(range(len(recipe.labels)))


def test_blur_id_helper_matches_nvdsosd():
    from toolchain.deepstream.app import blur_gie_class_ids

    assert conformance.parse_blur_ids(blur_gie_class_ids(1, 2)) == [[1, 0], [1, 1]]
    assert conformance.parse_blur_ids("1:0") == [[1]]  # the old value: one element, no class
