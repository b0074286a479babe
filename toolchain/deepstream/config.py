"""`fbtool deepstream`: the nvinfer config, labels, deepstream-app config and blur app, from one source.

Every value comes from the deployed ONNX's metadata (preprocessing, input size, labels, output
names), the recipe (thresholds) and the run folder's manifest (engine, INT8 artifacts); nothing is
typed twice. The result is checked against the key table before it is written.

Facts this relies on (see docs/deepstream.md and ../shared/REFERENCE.md):
- nvinfer names the engine it builds `<model file>_b<batch-size>_gpu<gpu-id>_<fp32|int8|fp16>.engine`
  and writes it beside the model file; model-engine-file must equal that name or the engine is
  rebuilt at every start. The mode in the name is the one AFTER nvinfer's fallback
  (nvdsinfer_model_builder.cpp, configCommonOptions): network-mode=1 without an accessible
  int8-calib-file becomes FP16.
- A Q/DQ ONNX (DeepStream >= 9.0) is built with `strongly-typed=1` and `network-mode=0`: TensorRT
  then takes every layer's precision from the graph's Q/DQ types, and nvinfer sets no precision
  flag. network-mode=1 would fall back to FP16 (no calibration file), set kFP16, which TensorRT 10
  refuses for a strongly typed network (buildEngine retries without it), and save `..._fp16.engine`.
- nvinfer's instance-segmentation post-processor (network-type=3) accepts only cluster-mode=4, so
  NMS for the mask output happens in the parser (NvDsInferParseFbtoolFaceMask); nvinfer applies the
  pre-cluster-threshold and topk of [class-attrs-*] after it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import FbtoolError
from ..fsutil import write_text
from ..nvinfer import keys
from ..nvinfer.keyfile import render
from ..nvinfer.names import DSBLUR_LIB as DSBLUR_LIB_NAME
from ..nvinfer.names import (
    NETWORK_MODE,
    PARSE_BBOX_FUNC,
    PARSE_MASK_FUNC,
    PARSER_LIB,
    PARSER_SYMBOLS,
    STREAMMUX_HEIGHT,
    STREAMMUX_WIDTH,
)
from ..recipe import Recipe
from ..runfolder import CALIB_CACHE, DSBLUR_LIB, ENGINE, ENGINE_MANIFEST, INT8_QDQ, RunFolder, fingerprint
from ..runfolder import PARSER_LIB as PARSER_LIB_ART

# nvdsosd/nvinfer threshold on the mask probabilities: the reference ellipse edge is exactly 0.5
# (toolchain/reference/masks.py), and metrics' mask IoU thresholds at 0.5 too.
MASK_THRESHOLD = 0.5
DEFAULT_DS = "9.1"
STRONGLY_TYPED_SINCE = (9, 0)


def ds_dir_for(recipe: Recipe, ds_dir: str | Path | None = None) -> Path:
    return Path(ds_dir) if ds_dir else Path.cwd() / "deepstream_configs" / recipe.name


def infer_config_name(model: str) -> str:
    return f"config_infer_primary_{model}.txt"


def blur_infer_config_name(model: str) -> str:
    return f"config_infer_blur_{model}.txt"


def nvinfer_mode(precision: str, strongly_typed: bool) -> str:
    """The network-mode nvinfer gets: FP32 (no precision flag) for a strongly typed Q/DQ ONNX."""
    return "fp32" if strongly_typed else precision


def engine_file_name(model_file: str | Path, batch: int, gpu_id: int, precision: str) -> str:
    """nvinfer's own name for the engine it builds from `model_file` (REFERENCE.md 4); the one
    naming rule lives in toolchain.trt.naming, shared with `fbtool build-engine`."""
    from ..trt.naming import engine_file_name as nvinfer_name

    return nvinfer_name(Path(model_file).name, batch, precision, gpu_id)


def deployed_onnx(run: RunFolder) -> Path:
    """Surgery's ONNX when the run has one, else export's."""
    found = run.model_onnx()
    assert found is not None  # required=True raises instead of returning None
    return found


@dataclass
class Sources:
    """Where each value of the config comes from."""

    onnx: Path  # the model file nvinfer parses
    meta: dict
    output_names: list[str]
    engine: Path
    engine_from_manifest: bool
    batch: int
    calib_cache: Path | None = None
    strongly_typed: bool = False


def _onnx_io(path: Path) -> tuple[dict, list[str]]:
    import onnx

    from ..onnx_meta import get_metadata

    model = onnx.load(str(path), load_external_data=False)
    return get_metadata(model), [o.name for o in model.graph.output]


def gather(recipe: Recipe, run: RunFolder, precision: str, ds_version: str, gpu_id: int = 0,
           batch: int | None = None) -> Sources:
    if precision not in NETWORK_MODE:
        raise FbtoolError(f"unknown precision {precision!r}", f"choose one of {', '.join(NETWORK_MODE)}")
    onnx_path = deployed_onnx(run).resolve()
    meta, outputs = _onnx_io(onnx_path)
    if not meta:
        raise FbtoolError(f"{onnx_path} has no fbtool metadata", "export it with `fbtool export`")
    if meta.get("recipe_hash") not in (None, recipe.hash):
        raise FbtoolError(f"{onnx_path} was exported from another version of recipe {recipe.name} "
                          f"({meta.get('recipe_hash')} != {recipe.hash})", "re-run `fbtool export` into this run folder")
    calib_cache, strongly = None, False
    if precision == "int8":
        qdq = run.get(INT8_QDQ)
        cache = run.get(CALIB_CACHE)
        if qdq is not None and keys._vt(ds_version) >= STRONGLY_TYPED_SINCE:
            onnx_path, strongly = qdq.resolve(), True
            _, outputs = _onnx_io(onnx_path)
        elif cache is not None:
            calib_cache = cache.resolve()
        else:
            have = "a Q/DQ ONNX only (needs DeepStream >= 9.0)" if qdq is not None else "no INT8 artifacts"
            raise FbtoolError(f"INT8 for DeepStream {ds_version} needs a calibration cache; the run folder has {have}",
                              f"run `fbtool calibrate -o {run.root}` first, or target --deepstream 9.x")
    b = batch or recipe.input.batch.max
    engine, from_manifest = None, False
    built = _built_engine(run, onnx_path, precision)
    if built is not None:
        engine, max_batch = built
        from_manifest = True
        if batch not in (None, max_batch):
            raise FbtoolError(f"--batch-size {batch} differs from the built engine's max batch {max_batch}",
                              "nvinfer would rebuild the engine; leave --batch-size out or rebuild the engine")
        b = max_batch
    if engine is None:
        engine = onnx_path.parent / engine_file_name(onnx_path, b, gpu_id, nvinfer_mode(precision, strongly))
    return Sources(onnx_path, meta, outputs, engine, from_manifest, b, calib_cache, strongly)


def _built_engine(run: RunFolder, onnx_path: Path, precision: str) -> tuple[Path, int] | None:
    """The build-engine stage's engine when nvinfer can load it for this config: a TensorRT (not
    TensorRT-RTX) engine of this precision, built from this very ONNX file."""
    import json

    mpath = run.get(ENGINE_MANIFEST)
    engine = run.get(ENGINE)
    if mpath is None or engine is None:
        return None
    m = json.loads(mpath.read_text())
    if (m.get("tensorrt", {}).get("runtime") != "tensorrt" or m.get("precision") != precision
            or m.get("onnx", {}).get("file") != onnx_path.name):
        return None
    return engine.resolve(), int(m["profile"]["max"][0])


def parser_lib(run: RunFolder, ds_dir: Path) -> tuple[Path, int | None]:
    """The parser library `fbtool build-parser` built into the run folder (and the DeepStream major
    its object layout targets), else the place the docs tell users to build it."""
    lib = run.get(PARSER_LIB_ART)
    if lib is None:
        return (ds_dir / PARSER_LIB).resolve(), None
    info = (run.stage("build-parser") or {}).get("info", {})
    frame = info.get("frame")
    if frame is not None and list(frame) != [STREAMMUX_WIDTH, STREAMMUX_HEIGHT]:
        # the parser clips boxes to this frame's part of the network input (docs/deepstream.md)
        raise FbtoolError(f"{lib.name} in the run folder was built for a {frame[0]}x{frame[1]} streammux frame, "
                          f"the app configs use {STREAMMUX_WIDTH}x{STREAMMUX_HEIGHT}",
                          f"rebuild it: `fbtool build-parser -o {run.root} --force`")
    missing = [f for f in PARSER_SYMBOLS if info.get("symbols") and f not in info["symbols"]]
    if missing:
        raise FbtoolError(f"{lib.name} in the run folder does not export {', '.join(missing)}",
                          f"rebuild it with `fbtool build-parser -o {run.root} --force`")
    return lib.resolve(), info.get("ds_major")


def infer_groups(recipe: Recipe, src: Sources, precision: str, ds_version: str, labels_path: Path, lib: Path,
                 gpu_id: int = 0, mask: bool = True, blur: bool = False) -> list:
    """`blur`: the blur app's config, recall first: pre-cluster-threshold is blur.live_score (else
    `fbtool blur`'s blur.score): a face the validation threshold drops would stay sharp, and a live
    pipeline cannot blur before a first detection or across a gap (measured in docs/deepstream.md)."""
    inp, pre = src.meta["input"], src.meta["preprocess"]
    t = recipe.thresholds
    labels = src.meta.get("labels", list(recipe.labels))
    prop = [
        ("gpu-id", gpu_id, None),
        ("gie-unique-id", 1, None),
        ("process-mode", 1, "primary detector on full frames"),
        ("crop-objects-to-roi-boundary", True,
         "keep faces cut by the frame's bottom/right edge (cropped to the frame); else nvinfer drops them"),
        ("onnx-file", str(src.onnx), "the run folder's deployed ONNX" + (" (Q/DQ INT8)" if src.strongly_typed else "")),
        ("model-engine-file", str(src.engine),
         "from the build-engine manifest" if src.engine_from_manifest else "nvinfer's own name for the engine it builds"),
    ]
    if src.calib_cache is not None:
        prop.append(("int8-calib-file", str(src.calib_cache), "legacy INT8 calibration cache from `fbtool calibrate`"))
    if src.strongly_typed:
        prop.append(("strongly-typed", True, "INT8 scales and every precision come from the ONNX Q/DQ nodes"))
    prop += [
        ("batch-size", src.batch, None),
        ("network-mode", NETWORK_MODE[nvinfer_mode(precision, src.strongly_typed)],
         "0: no precision flag, the strongly typed Q/DQ graph decides (1 would fall back to FP16)"
         if src.strongly_typed else f"{precision} (0 FP32, 1 INT8, 2 FP16)"),
        ("infer-dims", [inp.get("channels", 3), inp["height"], inp["width"]], "C;H;W of the ONNX input"),
        ("network-input-order", 0, "NCHW"),
        ("net-scale-factor", float(pre["scale"]), "y = net-scale-factor * (x - offsets[c])"),
        ("offsets", [float(m) for m in pre["mean"]], f"per-channel means, {pre['color'].upper()} order"),
        ("model-color-format", 1 if pre["color"] == "bgr" else 0, "0 RGB, 1 BGR"),
        ("maintain-aspect-ratio", bool(pre["letterbox"]), "letterbox, as toolchain/preprocess.py"),
        ("symmetric-padding", bool(pre["symmetric_padding"]), "0: pad right/bottom"),
        ("scaling-filter", 1 if pre["interpolation"] == "bilinear" else 0, "1 bilinear, 0 nearest"),
        ("output-blob-names", src.output_names, "the ONNX outputs; the parser finds layers by name"),
        ("labelfile-path", str(labels_path), None),
        ("num-detected-classes", len(labels), None),
        ("custom-lib-path", str(lib), "built by `fbtool build-parser` (plugins/)"),
    ]
    if mask:
        prop += [
            ("network-type", 3, "instance segmentation: a contour mask per face"),
            ("output-instance-mask", True, None),
            ("parse-bbox-instance-mask-func-name", PARSE_MASK_FUNC, None),
            ("segmentation-threshold", MASK_THRESHOLD, "mask probability at the ellipse edge"),
            ("cluster-mode", 4, "nvinfer clusters no instance masks (cluster-mode=4 only); the parser runs NMS"),
        ]
    else:
        prop += [
            ("network-type", 0, "detector"),
            ("parse-bbox-func-name", PARSE_BBOX_FUNC, None),
            ("cluster-mode", 2, "NMS"),
        ]
    attrs = [
        ("pre-cluster-threshold", float(recipe.live_blur_score) if blur else float(t.score),
         ("recipe blur.live_score: recall first, a live pipeline has no look-ahead" if recipe.blur.live_score
          is not None else "recipe blur.score: recall first, as `fbtool blur`") if blur else "recipe thresholds.score"),
        ("nms-iou-threshold", float(t.nms_iou),
         "recipe thresholds.nms_iou" + (" (applied inside the parser; nvinfer ignores it with cluster-mode=4)"
                                         if mask else "")),
        ("topk", int(t.top_k), "recipe thresholds.top_k"),
    ]
    return [("property", prop), ("class-attrs-all", attrs)]


def header(recipe: Recipe, ds_version: str, precision: str, what: str) -> list[str]:
    from .. import __version__

    return [f"{what} for {recipe.name} ({recipe.family} {recipe.variant}), {precision}, DeepStream {ds_version}.",
            f"Written by fbtool {__version__} from recipe hash {recipe.hash}; regenerate with `fbtool deepstream`,",
            "do not edit by hand (`fbtool deepstream --check FILE` validates a file)."]


def _check_inside(outputs: dict[str, Path], target: Path) -> None:
    for key, p in outputs.items():
        if p.resolve().parent != target:
            raise FbtoolError(f"the {key} file {p} would leave the DeepStream folder {target}",
                              "the recipe name must be a plain file name")


def _check_outputs(outputs: dict[str, Path], target: Path, src: Sources, lib: Path, labels) -> None:
    """Every file lands inside --ds-dir under its own name and overwrites none of the inputs."""
    from ..fsutil import refuse_overwrite
    from ..recipe import LABEL_RE

    _check_inside(outputs, target)
    bad = [x for x in labels if not isinstance(x, str) or not LABEL_RE.fullmatch(x)]
    if bad:
        raise FbtoolError(f"the model's labels metadata holds an unsafe label {str(bad[0])[:40]!r}",
                          "re-export the model from a valid recipe")
    refuse_overwrite(outputs, {"onnx": src.onnx, "engine": src.engine, "calibration cache": src.calib_cache,
                               "parser library": lib})


def emit(recipe: Recipe, out: str | Path, precision: str = "fp32", ds_version: str = DEFAULT_DS,
         ds_dir: str | Path | None = None, gpu_id: int = 0, mask: bool = True, batch: int | None = None,
         input_uri: str | None = None) -> dict:
    """Write the DeepStream files for the run folder `out`; record them under stage "deepstream"."""
    from . import tracker
    from .app import app_groups, blur_script, supports_mask_blur

    if ds_version not in keys.versions():
        raise FbtoolError(f"DeepStream {ds_version} is not a target", f"choose one of {', '.join(keys.versions())}")
    run = RunFolder(out)
    target = ds_dir_for(recipe, ds_dir).resolve()
    _check_inside({"infer_config": target / infer_config_name(recipe.name),
                   "app_config": target / f"deepstream_app_{recipe.name}.txt"}, target)
    src = gather(recipe, run, precision, ds_version, gpu_id, batch)
    labels_path = target / "labels.txt"
    infer_path = target / infer_config_name(recipe.name)
    app_path = target / f"deepstream_app_{recipe.name}.txt"
    blur_infer_path = target / blur_infer_config_name(recipe.name)
    lib, lib_major = parser_lib(run, target)
    ds_major = keys._vt(ds_version)[0]
    if lib_major is not None and (lib_major >= 9) != (ds_major >= 9):
        raise FbtoolError(f"the parser in {lib.parent} was built for the DeepStream {lib_major}.x object layout, "
                          f"the target is DeepStream {ds_version}",
                          f"rebuild it: `fbtool build-parser -o {run.root} --ds-major {9 if ds_major >= 9 else 8}`")

    infer_text = render(infer_groups(recipe, src, precision, ds_version, labels_path, lib, gpu_id, mask),
                        header(recipe, ds_version, precision, "Gst-nvinfer config"))
    blur_app = mask and supports_mask_blur(ds_version)
    blur_infer_text = render(infer_groups(recipe, src, precision, ds_version, labels_path, lib, gpu_id, mask, blur=True),
                             header(recipe, ds_version, precision, "Gst-nvinfer config of the blur app"))
    app_text = render(app_groups(recipe, infer_path.name, src.batch, gpu_id, input_uri, with_tracker=blur_app),
                      header(recipe, ds_version, precision, "deepstream-app config"))
    from ..nvinfer.keyfile import parse

    findings = {}
    checked = [(infer_path, infer_text, "nvinfer"), (app_path, app_text, "deepstream_app")]
    for path, text, kind in checked + ([(blur_infer_path, blur_infer_text, "nvinfer")] if blur_app else []):
        f = keys.check(parse(text, str(path)), ds_version, kind)
        keys.ensure_valid(f, str(path))
        findings[path.name] = [str(x) for x in f]

    labels = src.meta.get("labels", list(recipe.labels))
    outputs = {"infer_config": infer_path, "app_config": app_path, "labels": labels_path,
               "blur_app": target / f"run_blur_{recipe.name}.sh", "tracker_config": target / tracker.LL_CONFIG_NAME,
               "blur_infer_config": blur_infer_path}
    _check_outputs(outputs, target, src, lib, labels)
    write_text(labels_path, "\n".join(labels) + "\n")
    write_text(infer_path, infer_text)
    write_text(app_path, app_text)
    artifacts: dict[str, str | os.PathLike] = {"infer_config": infer_path, "app_config": app_path, "labels": labels_path}
    dsblur = run.get(DSBLUR_LIB)
    if blur_app:
        # fbtool's blur library: the one `fbtool build-parser --dsblur` built (a DeepStream host), else
        # the name the script looks up beside itself (docs/deepstream.md)
        trk = outputs["tracker_config"]
        write_text(trk, tracker.ll_config(recipe.blur.hold, recipe.blur.track_iou))
        write_text(blur_infer_path, blur_infer_text)
        blur = outputs["blur_app"]
        write_text(blur, blur_script(recipe, blur_infer_path.name, gpu_id,
                                     str(dsblur.resolve()) if dsblur else DSBLUR_LIB_NAME))
        blur.chmod(0o755)
        artifacts.update({"blur_app": blur, "tracker_config": trk, "blur_infer_config": blur_infer_path})
    sgie = None
    if recipe.contour.model is not None:  # two-model recipe: FaceMesh as the secondary GIE (secondary.py)
        from .secondary import emit_for_run

        sgie = emit_for_run(recipe, run.root, target, precision, ds_version, gpu_id)
        artifacts["sgie_config"] = Path(sgie["sgie_config"])
        if "blur_app" in artifacts:
            from .secondary import with_contour_stage

            two = with_contour_stage(artifacts["blur_app"].read_text(), sgie["pipeline"])
            if two is None:
                sgie["warnings"].append("the blur app has no place for the FaceMesh stage: add info.sgie.pipeline by hand")
            else:
                write_text(artifacts["blur_app"], two)
                artifacts["blur_app"].chmod(0o755)
    info = {"precision": precision, "deepstream": ds_version, "ds_dir": str(target), "onnx": str(src.onnx),
            "engine": str(src.engine), "engine_from_manifest": src.engine_from_manifest, "batch_size": src.batch,
            "int8": "qdq" if src.strongly_typed else ("calib_cache" if src.calib_cache else None),
            "network_type": 3 if mask else 0, "parser_lib": str(lib), "parser_lib_exists": lib.is_file(),
            "dsblur_lib": str(dsblur.resolve() if dsblur else target / DSBLUR_LIB_NAME) if blur_app else None,
            "hold": recipe.blur.hold if blur_app else None,
            "warnings": [w for ws in findings.values() for w in ws]}
    if sgie is not None:
        info["sgie"] = sgie
    run.record("deepstream", artifacts, info,
               inputs=fingerprint(recipe.hash, precision, ds_version, str(target), src.onnx, gpu_id, mask, src.batch,
                                  recipe.blur.hold, recipe.blur.track_iou, recipe.live_blur_score, recipe.live_blur_mask,
                                  str(dsblur)),
               recipe=recipe)
    info["files"] = {k: str(v) for k, v in artifacts.items()}
    return info
