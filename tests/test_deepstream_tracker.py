"""The emitted face-blur pipeline (nvtracker + nvdsvideotemplate with fbtool's blur library) against
NVIDIA's DeepStream 9.1 source: deepstream-app's own parser on the [tracker] group, the element
properties the blur script sets against those gstnvtracker.cpp / gstnvdsvideotemplate.cpp install, the
customlib-props against customlib.cpp's SetProperty, and the low-level YAML keys that the open source
names (NvMOTQuery, includes/nvdstracker.h). The other low-level keys (probationAge, the associator's)
are read only by the closed NvMultiObjectTracker and are checked against fbtool's own values only."""

from __future__ import annotations

import re
import shlex
import shutil

import pytest
import yaml

from toolchain.nvinfer import conformance

needs_nvidia = pytest.mark.skipif(conformance.missing_reason() is not None,
                                  reason=f"NVIDIA's DeepStream code cannot be built here: {conformance.missing_reason()}")
needs_source = pytest.mark.skipif(conformance.element_source("nvtracker") is None,
                                  reason="no gst-nvtracker / gst-nvdsvideotemplate sources")
UNCHECKABLE = {"minDetectorConfidence", "minIouDiff4NewTarget", "probationAge", "earlyTerminationAge", "useUniqueID",
               "dataAssociatorType", "associationMatcherType", "checkClassMatch", "minMatchingScore4Overall",
               "minMatchingScore4SizeSimilarity", "minMatchingScore4Iou", "matchingScoreWeight4SizeSimilarity",
               "matchingScoreWeight4Iou"}


@pytest.fixture(scope="module")
def emitted(exported, recipe, tmp_path_factory):
    from toolchain.deepstream import emit
    from toolchain.runfolder import RunFolder

    tmp = tmp_path_factory.mktemp("dstrk")
    src_run, info = exported
    run = tmp / "run"
    run.mkdir()
    shutil.copy(src_run / "model.onnx", run / "model.onnx")
    RunFolder(run).record("export", {"onnx": run / "model.onnx"}, info)
    out = emit(recipe, run, ds_dir=tmp / "ds", ds_version="9.1")
    return out, tmp / "ds"


def _element_props(script: str, element: str) -> dict[str, str]:
    """The key=value properties of `element` in the gst-launch line (shell-unquoted, $VARS left as text)."""
    body = script.replace("\\\n", " ")
    seg = next(s for s in body.split(" ! ") if s.strip().startswith(element + " "))
    props: dict[str, list[str]] = {}
    for tok in shlex.split(seg)[1:]:
        k, _, v = tok.partition("=")
        props.setdefault(k, []).append(v)
    return props


def _ll_yaml(path) -> dict:
    text = path.read_text()
    assert text.startswith("%YAML:1.0\n")  # NvMultiObjectTracker's (OpenCV-style) header
    groups = yaml.safe_load(text.split("\n", 1)[1])
    return {k: v for g in groups.values() for k, v in g.items()}


@needs_source
def test_script_sets_only_properties_the_elements_install(emitted):
    out, ds = emitted
    script = open(out["files"]["blur_app"]).read()
    for element in ("nvtracker", "nvdsvideotemplate"):
        installed = conformance.gst_properties(conformance.element_source(element))
        props = _element_props(script, element)
        assert props, element
        for k, values in props.items():
            assert k in installed, f"{element} has no property {k!r} ({conformance.element_source(element)})"
            kind = installed[k]
            for v in values:
                if kind in ("uint", "int"):
                    assert re.fullmatch(r"-?\d+", v), (element, k, v)
                elif kind == "boolean":
                    assert v in ("0", "1", "true", "false"), (element, k, v)
    # gstnvdsvideotemplate.cpp appends one Property per customlib-props setting; repeated settings add up
    assert len(_element_props(script, "nvdsvideotemplate")["customlib-props"]) == 4


@needs_source
def test_customlib_props_are_what_the_library_reads(emitted, recipe):
    """Each customlib-props value splits at its first ':' (gst_nvdsvideotemplate_set_property) into a key
    that customlib.cpp's SetProperty knows; the hold is fbtool blur's, the mask rule the recipe's (one
    model: the whole box) and a value SetProperty accepts."""
    from toolchain.nvinfer.dsblur import DSBLUR_DIR

    out, _ = emitted
    known = set(re.findall(r'prop\.key == "([^"]+)"', (DSBLUR_DIR / "customlib.cpp").read_text()))
    props = dict(v.split(":", 1) for v in _element_props(open(out["files"]["blur_app"]).read(),
                                                          "nvdsvideotemplate")["customlib-props"])
    assert set(props) <= known and set(props) == {"hold", "classes", "gie-id", "mask"}
    assert int(props["hold"]) == recipe.blur.hold
    assert props["mask"] == recipe.live_blur_mask == "box"
    accepted = re.search(r'prop\.value != "(\w+)" && prop\.value != "(\w+)"', (DSBLUR_DIR / "customlib.cpp").read_text())
    assert props["mask"] in accepted.groups() and set(accepted.groups()) == {"box", "own"}
    assert [int(c) for c in props["classes"].split(";")] == list(range(len(recipe.labels)))


@needs_source
def test_tracker_keeps_ids_the_shadow_list_uses_and_untracked_faces(emitted, recipe):
    """tracking-id-reset-mode without bit FromZeroAfterEOS (objectIdMapping remaps object_id, not the
    shadow list's uniqueId) and operate-on-class-ids set (removeUntrackedObjects keeps what the tracker
    did not take), read from NVIDIA's nvtracker sources."""
    src = conformance.element_source("nvtracker").parent
    enum = (src / "invtracker_proc.h").read_text()
    bit = int(re.search(r"TrackingIdResetMode_FromZeroAfterEOS\s*=\s*1\s*<<\s*(\d+)", enum).group(1))
    proc = (src / "nvtracker_proc.cpp").read_text()
    assert "m_Config.operateOnClassIds.size() == 0" in proc  # the removal only happens without the property
    assert "objectIdMapping" in proc and "pShadowTrackStream->streamID = getStreamId(ssId)" in proc
    out, _ = emitted
    props = _element_props(open(out["files"]["blur_app"]).read(), "nvtracker")
    assert not int(props["tracking-id-reset-mode"][0]) & (1 << bit)
    ids = [int(c) for c in props["operate-on-class-ids"][0].split(";")]
    assert ids == list(range(len(recipe.labels)))


@needs_source
def test_low_level_yaml_keys_the_source_names(emitted, recipe):
    out, ds = emitted
    cfg = _ll_yaml(ds / "config_tracker_fbtool_iou.yml")
    header = (conformance.find_sources().include / "nvdstracker.h").read_text()
    query = header[header.index("typedef struct _NvMOTQuery"):header.index("} NvMOTQuery;")]
    named = {k for k in cfg if re.search(rf"\b{k}\b", query)}
    assert named == {"maxTargetsPerStream", "maxShadowTrackingAge", "outputShadowTracks"}
    assert set(cfg) - named == UNCHECKABLE  # read by the closed library only (docs/deepstream.md)
    assert cfg["outputShadowTracks"] == 1 and cfg["maxShadowTrackingAge"] == recipe.blur.hold
    assert cfg["probationAge"] == 0 and cfg["minMatchingScore4Iou"] == recipe.blur.track_iou


@needs_nvidia
def test_deepstream_app_reads_the_tracker_group(emitted, recipe):
    out, ds = emitted
    got, messages = conformance.parse_app_config(out["files"]["app_config"])
    assert got["parsed"], messages
    assert conformance.unknown_keys(messages) == []
    t = got["tracker"]
    assert t["enable"] == 1 and (t["width"], t["height"]) == (640, 384)
    assert t["ll_config_file"] == str((ds / "config_tracker_fbtool_iou.yml").resolve())
    assert t["tracking_id_reset_mode"] == 1 and t["display_tracking_id"] == 0
    assert t["operate_on_class_ids"] == ";".join(str(c) for c in range(len(recipe.labels)))


@needs_nvidia
def test_blur_app_nvinfer_is_recall_first_and_named_by_the_library(emitted, recipe):
    """The blur app's own nvinfer config (the one the script loads), read by Gst-nvinfer's parser: the
    same as the validation config but for pre-cluster-threshold = blur.live_score (below blur.score: a
    live pipeline cannot look ahead); its gie-unique-id is the
    gie-id the blur library filters on."""
    out, ds = emitted
    script = open(out["files"]["blur_app"]).read()
    loaded = re.search(r'nvinfer config-file-path="\$HERE/"(\S+)', script).group(1)
    assert ds / loaded == __import__("pathlib").Path(out["files"]["blur_infer_config"])
    blur_nv, messages = conformance.parse_nvinfer_config(out["files"]["blur_infer_config"])
    assert blur_nv["parsed"] and conformance.unknown_keys(messages) == []
    val_nv, _ = conformance.parse_nvinfer_config(out["files"]["infer_config"])
    assert recipe.live_blur_score == recipe.blur.live_score < recipe.blur.score
    assert [c["preClusterThreshold"] for c in blur_nv["classes"]] == pytest.approx([recipe.live_blur_score] * len(recipe.labels))
    assert [c["preClusterThreshold"] for c in val_nv["classes"]] == pytest.approx([recipe.thresholds.score] * len(recipe.labels))
    strip = {"classes"}
    assert {k: v for k, v in blur_nv.items() if k not in strip} == {k: v for k, v in val_nv.items() if k not in strip}
    props = dict(v.split(":", 1) for v in _element_props(script, "nvdsvideotemplate")["customlib-props"])
    assert int(props["gie-id"]) == blur_nv["uniqueID"]
    assert max(int(c) for c in props["classes"].split(";")) < blur_nv["numDetectedClasses"]
