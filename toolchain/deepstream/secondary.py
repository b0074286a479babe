"""The two-model deployment: FaceMesh as a secondary nvinfer (SGIE) on the detector's faces.

    nvinfer (detector, gie 1) -> nvtracker -> [contour: square] -> nvinfer (FaceMesh, gie 2) ->
    [contour: apply] -> nvdsosd blur-bbox=2

Facts from DeepStream 9.1's source (../shared/third_party/deepstream-9.1/src/gst-plugins/gst-nvinfer;
docs/deepstream.md, "Two models"):
- process-mode=2 + operate-on-gie-id=1: gstnvinfer.cpp, gst_nvinfer_process_objects and
  should_infer_object, infer on the objects of gie 1 only; network-type=100 has no re-inference
  interval (that applies to classifiers and detectors), so every face is inferred in every frame.
- network-type=100 + output-tensor-meta=1: gstnvinfer_meta_utils.cpp, attach_tensor_output_meta, puts
  the raw output layers in an NvDsInferTensorMeta on each object's obj_user_meta_list; no parser.
- The crop is the object box, even-rounded (get_converted_buffer), so the box-squaring component
  (plugins/contour, fbtool_contour_square) must run before this nvinfer and fbtool_contour_apply after.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FbtoolError
from ..fsutil import write_text
from ..nvinfer import keys
from ..nvinfer.keyfile import parse, render
from ..nvinfer.names import NETWORK_MODE
from ..recipe import ContourSpec, Recipe

PGIE_ID, SGIE_ID = 1, 2  # gie-unique-id of the detector and of FaceMesh
SGIE_PRECISIONS = ("fp32", "fp16")  # INT8 only once FaceMesh's calibration passes its gate (issue 16)


def secondary_config_name(fm_recipe: Recipe) -> str:
    return f"config_infer_secondary_{fm_recipe.name}.txt"


def landmark_model_keys(fm_recipe: Recipe) -> list:
    """The landmark model's input and preprocessing as nvinfer keys: the one place its constants
    (toolchain/models/facemesh.py, recipes/facemesh.yaml: 192x192 RGB, x / 255, no mean, no letterbox)
    become config values. nvinfer computes y = net-scale-factor * (x - offsets[c])."""
    inp, pre, out = fm_recipe.input, fm_recipe.preprocess, fm_recipe.outputs
    if pre.color not in ("rgb", "bgr"):
        raise FbtoolError(f"recipe field 'preprocess.color' {pre.color!r} has no nvinfer model-color-format",
                          "use rgb or bgr")
    return [
        ("infer-dims", [3, inp.height, inp.width], "C;H;W of the FaceMesh input"),
        ("network-input-order", 0, "NCHW"),
        ("net-scale-factor", float(pre.scale), "y = net-scale-factor * (x - offsets[c])"),
        ("offsets", [float(m) for m in pre.mean], f"{pre.color.upper()} order"),
        ("model-color-format", 0 if pre.color == "rgb" else 1, "0 RGB, 1 BGR"),
        ("maintain-aspect-ratio", False,
         "the squared box is square: stretched = letterboxed (the contour component reads both)"),
        ("scaling-filter", 1 if pre.interpolation == "bilinear" else 0, "1 bilinear, 0 nearest"),
        ("output-blob-names", [out.scores, out.landmarks], "presence [1], landmarks [468, 3] crop pixels"),
    ]


def sgie_groups(fm_recipe: Recipe, onnx: Path, engine: Path, batch: int, precision: str, gpu_id: int = 0,
                pgie_id: int = PGIE_ID, sgie_id: int = SGIE_ID) -> list:
    if precision not in SGIE_PRECISIONS:
        raise FbtoolError(f"precision {precision!r} is not deployed for the landmark model",
                          f"choose one of {', '.join(SGIE_PRECISIONS)}")
    prop = [
        ("gpu-id", gpu_id, None),
        ("gie-unique-id", sgie_id, "fbtool_contour_apply looks for tensor meta of this id"),
        ("process-mode", 2, "secondary: on the detector's objects (their squared boxes)"),
        ("operate-on-gie-id", pgie_id, "the face detector"),
        ("network-type", 100, "other: raw output, no parser; every object, every frame"),
        ("output-tensor-meta", True, "NvDsInferTensorMeta on each object's obj_user_meta_list"),
        ("onnx-file", str(onnx), "the landmark model's ONNX"),
        ("model-engine-file", str(engine), "nvinfer's own name for the engine it builds"),
        ("batch-size", batch, "faces per batch"),
        ("network-mode", NETWORK_MODE[precision], f"{precision} (0 FP32, 2 FP16)"),
    ]
    prop += landmark_model_keys(fm_recipe)
    return [("property", prop)]


def component_params(fm_recipe: Recipe, spec: ContourSpec, pgie_id: int = PGIE_ID, sgie_id: int = SGIE_ID) -> dict:
    """FbtoolContourParams (plugins/contour/fbtool_contour.h) for this deployment. The presence output
    is a probability (facemesh.py applies the sigmoid), the landmarks are crop pixels."""
    return {"pgie_id": pgie_id, "sgie_id": sgie_id, "scale": float(spec.crop_scale),
            "presence_threshold": float(spec.presence), "presence_is_logit": 0, "landmark_scale": 1.0}


CONTOUR_LIB = "libnvds_fbtool_contour.so"  # plugins/contour, `make -C plugins/contour lib` on a DeepStream host


def pipeline_fragment(config_name: str, params: dict, lib_dir: str = "$HERE") -> str:
    """The gst-launch elements that go between nvtracker and the blur (nvdsosd or fbtool's dsblur
    library): square, FaceMesh, contour. Each customlib-props is one key:value."""
    props = [f"pgie-id:{params['pgie_id']}", f"sgie-id:{params['sgie_id']}", f"scale:{params['scale']:g}",
             f"presence:{params['presence_threshold']:g}", f"presence-is-logit:{params['presence_is_logit']}",
             f"landmark-scale:{params['landmark_scale']:g}"]
    common = " ".join(f'customlib-props="{p}"' for p in props)
    lib = f'customlib-name="{lib_dir}/{CONTOUR_LIB}"'
    return (f'nvdsvideotemplate {lib} customlib-props="stage:square" {common} ! '
            f'nvinfer config-file-path="{lib_dir}/{config_name}" ! '
            f'nvdsvideotemplate {lib} customlib-props="stage:apply" {common}')


def with_contour_stage(script: str, fragment: str, lib_dir: str = "$HERE") -> str | None:
    """The blur app (a gst-launch script) with the two-model fragment placed before its first
    nvvideoconvert, i.e. after inference (and nvtracker, where the script has it); None when the script
    has no such place."""
    lines = script.split("\n")
    at = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("nvvideoconvert")), None)
    launch = next((i for i, ln in enumerate(lines) if ln.startswith("gst-launch-1.0")), None)
    if at is None or launch is None or at < launch:
        return None
    lines.insert(at, f"  {fragment} ! \\")
    lib = f"{lib_dir}/{CONTOUR_LIB}"  # as pipeline_fragment names it; the script stops early without it
    lines[launch:launch] = ["# Two models: FaceMesh between fbtool's contour components (docs/deepstream.md, \"Two models\");",
                            f"# build {CONTOUR_LIB} on this host (make -C plugins/contour lib) and put it beside this script.",
                            f'if [ ! -f "{lib}" ]; then',
                            f'  echo "Error: {lib} does not exist (hint: build it on this host: make -C plugins/contour lib '
                            'BUILD_DIR=... DS_INCLUDE=... VIDEOTEMPLATE_INCLUDE=..., docs/deepstream.md \\"Two models\\")" >&2',
                            "  exit 1", "fi"]
    return "\n".join(lines)


def secondary_app_group(config_name: str, batch: int, gpu_id: int = 0, sgie_id: int = SGIE_ID,
                        pgie_id: int = PGIE_ID) -> tuple:
    """deepstream-app's [secondary-gie0] (deepstream_config_file_parser.c, parse_gie). deepstream-app
    has no place for the two components between its GIEs; the blur app (a gst-launch pipeline) has."""
    return ("secondary-gie0", [
        ("enable", True, None),
        ("gpu-id", gpu_id, None),
        ("gie-unique-id", sgie_id, None),
        ("operate-on-gie-id", pgie_id, None),
        ("batch-size", batch, None),
        ("config-file", config_name, None),
    ])


def emit_secondary(det_recipe: Recipe, fm_recipe: Recipe, fm_onnx: str | Path, ds_dir: str | Path,
                   precision: str = "fp16", ds_version: str = "9.1", gpu_id: int = 0,
                   batch: int | None = None) -> dict:
    """Write the FaceMesh SGIE config beside the detector's DeepStream files (key table checked)."""
    from ..trt.naming import engine_file_name

    if det_recipe.contour.model is None:
        raise FbtoolError(f"recipe {det_recipe.name} has no second model", "use a two-model recipe (contour.model)")
    onnx = Path(fm_onnx).resolve()
    b = batch or fm_recipe.input.batch.max
    engine = onnx.parent / engine_file_name(onnx.name, b, precision, gpu_id)
    target = Path(ds_dir).resolve()
    path = target / secondary_config_name(fm_recipe)
    text = render(sgie_groups(fm_recipe, onnx, engine, b, precision, gpu_id),
                  [f"Gst-nvinfer config: {fm_recipe.name} as the secondary GIE of {det_recipe.name}, {precision}, "
                   f"DeepStream {ds_version}.", "Written by `fbtool deepstream`; do not edit by hand."])
    findings = keys.check(parse(text, str(path)), ds_version, "nvinfer")
    keys.ensure_valid(findings, str(path))
    target.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    return {"sgie_config": str(path), "onnx": str(onnx), "engine": str(engine), "batch_size": b,
            "precision": precision, "components": component_params(fm_recipe, det_recipe.contour),
            "pipeline": pipeline_fragment(path.name, component_params(fm_recipe, det_recipe.contour)),
            "warnings": [str(f) for f in findings]}


def emit_for_run(det_recipe: Recipe, run_root: str | Path, ds_dir: str | Path, precision: str, ds_version: str,
                 gpu_id: int = 0) -> dict:
    """The SGIE config of a two-model run: the landmark model's deployed ONNX from its run folder inside
    the detector's (`fbtool run` on the two-model recipe puts it there). INT8 is not deployed for it
    (FaceMesh's INT8 fails its gate, issue 16): an INT8 detector gets an FP16 FaceMesh."""
    from ..recipe import landmark_recipe
    from ..runfolder import RunFolder, landmark_run_dir

    fm = landmark_recipe(det_recipe)
    fm_run = RunFolder(landmark_run_dir(run_root, fm.name))
    onnx = fm_run.model_onnx(required=False)
    if onnx is None:
        raise FbtoolError(f"recipe {det_recipe.name} needs the landmark model {fm.name}, and {fm_run.root} holds no "
                          "ONNX of it", f"run the chain for both models: `fbtool run --recipe {det_recipe.source or det_recipe.name} "
                          f"-o {run_root}`")
    return emit_secondary(det_recipe, fm, onnx, ds_dir, precision if precision in SGIE_PRECISIONS else "fp16",
                          ds_version, gpu_id)

