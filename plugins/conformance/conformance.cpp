// Conformance driver: runs NVIDIA's OWN DeepStream code (compiled unmodified from the DeepStream
// sources, see Makefile) on fbtool's output and prints what it made of it as one JSON object.
//
//   conformance nvinfer CONFIG     Gst-nvinfer element (gst_nvinfer_init) + config-file-path
//                                  (gst_nvinfer_parse_config_file, NvDsInferContext_ResetInitParams),
//                                  then gst_nvinfer_start's checks that run before any CUDA work
//   conformance osd VALUE          nvdsosd element, blur-on-gie-class-ids=VALUE
//                                  (gst_nvds_osd_set_property): the (gie, class) lists it keeps
//   conformance keyfile FILE GROUP KEY int|bool|double|string   GLib's own reading of one key
//   conformance app CONFIG         deepstream-app's parse_config_file (app.c)
//   conformance postproc CONFIG SPEC  nvdsinfer post-processing + attach_metadata_detector (postproc.cpp)
//   conformance tensormeta CONFIG SPEC  attach_tensor_output_meta between fbtool's contour components
//                                  (tensormeta.cpp)
//
// NVIDIA's messages (g_printerr, the logger stub) go to stderr; the JSON goes to stdout.
#include <cstdio>
#include <cstring>
#include <string>

#include <gst/gst.h>
#include <gst/base/gstbasetransform.h>

#include "gstnvinfer.h"
#include "gstnvinfer_impl.h"
#include "nvdsinfer_func_utils.h"
#include "gstnvdsosd.h"

int cmd_postproc(const char* config, const char* spec_path);  // postproc.cpp
extern "C" int cmd_app(const char* path);                     // app.c
int cmd_tensormeta(const char* config, const char* spec_path);  // tensormeta.cpp

namespace {

std::string js(const char* s)
{
    std::string out = "\"";
    for (const char* p = s ? s : ""; *p; ++p) {
        unsigned char c = static_cast<unsigned char>(*p);
        if (c == '"' || c == '\\') { out += '\\'; out += *p; }
        else if (c < 0x20) { char b[8]; snprintf(b, sizeof b, "\\u%04x", c); out += b; }
        else out += *p;
    }
    return out + "\"";
}

std::string num(double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.9g", v);
    return b;
}

int cmd_nvinfer(const char* path)
{
    GstElement* el = GST_ELEMENT(g_object_new(GST_TYPE_NVINFER, nullptr));
    GstNvInfer* nv = GST_NVINFER(el);
    g_object_set(el, "config-file-path", path, nullptr);
    auto* impl = reinterpret_cast<gstnvinfer::DsNvInferImpl*>(nv->impl);
    NvDsInferContextInitParams* p = impl->m_InitParams.get();

    std::string o = "{";
    o += "\"parsed\": " + std::string(nv->config_file_parse_successful ? "true" : "false");
    o += ", \"uniqueID\": " + std::to_string(p->uniqueID);
    o += ", \"unique_id\": " + std::to_string(nv->unique_id);
    o += ", \"networkMode\": " + std::to_string(p->networkMode);
    o += ", \"networkType\": " + std::to_string(p->networkType);
    o += ", \"useStronglyTyped\": " + std::to_string(p->useStronglyTyped);
    o += ", \"onnxFilePath\": " + js(p->onnxFilePath);
    o += ", \"modelEngineFilePath\": " + js(p->modelEngineFilePath);
    o += ", \"int8CalibrationFilePath\": " + js(p->int8CalibrationFilePath);
    o += ", \"labelsFilePath\": " + js(p->labelsFilePath);
    o += ", \"customLibPath\": " + js(p->customLibPath);
    o += ", \"customBBoxParseFuncName\": " + js(p->customBBoxParseFuncName);
    o += ", \"customBBoxInstanceMaskParseFuncName\": " + js(p->customBBoxInstanceMaskParseFuncName);
    o += ", \"maxBatchSize\": " + std::to_string(p->maxBatchSize);
    o += ", \"gpuID\": " + std::to_string(p->gpuID);
    o += ", \"numDetectedClasses\": " + std::to_string(p->numDetectedClasses);
    o += ", \"clusterMode\": " + std::to_string(p->clusterMode);
    o += ", \"segmentationThreshold\": " + num(p->segmentationThreshold);
    o += ", \"networkScaleFactor\": " + num(p->networkScaleFactor);
    o += ", \"networkInputFormat\": " + std::to_string(p->networkInputFormat);
    o += ", \"offsets\": [";
    for (unsigned i = 0; i < p->numOffsets; ++i) o += (i ? ", " : "") + num(p->offsets[i]);
    o += "], \"inferInputDims\": [" + std::to_string(p->inferInputDims.c) + ", " +
         std::to_string(p->inferInputDims.h) + ", " + std::to_string(p->inferInputDims.w) + "]";
    o += ", \"netInputOrder\": " + std::to_string(p->netInputOrder);
    o += ", \"outputLayerNames\": [";
    for (unsigned i = 0; i < p->numOutputLayers; ++i) o += (i ? ", " : "") + js(p->outputLayerNames[i]);
    o += "], \"maintain_aspect_ratio\": " + std::to_string(nv->maintain_aspect_ratio);
    o += ", \"symmetric_padding\": " + std::to_string(nv->symmetric_padding);
    o += ", \"transform_filter\": " + std::to_string(nv->transform_params.transform_filter);
    o += ", \"process_full_frame\": " + std::to_string(nv->process_full_frame);
    o += ", \"output_instance_mask\": " + std::to_string(nv->output_instance_mask);
    o += ", \"crop_objects_to_roi_boundary\": " + std::to_string(nv->crop_objects_to_roi_boundary);
    // secondary (FaceMesh) keys: gst_nvinfer_process_objects / should_infer_object read these
    o += ", \"operate_on_gie_id\": " + std::to_string(nv->operate_on_gie_id);
    o += ", \"output_tensor_meta\": " + std::to_string(nv->output_tensor_meta);
    o += ", \"min_input_object_wh\": [" + std::to_string(nv->min_input_object_width) + ", " +
         std::to_string(nv->min_input_object_height) + "]";
    o += ", \"classes\": [";
    for (unsigned i = 0; p->perClassDetectionParams && i < p->numDetectedClasses; ++i) {
        const NvDsInferDetectionParams& d = p->perClassDetectionParams[i];
        const GstNvInferDetectionFilterParams& f = (*nv->perClassDetectionFilterParams)[i];
        o += std::string(i ? ", " : "") + "{\"preClusterThreshold\": " + num(d.preClusterThreshold) +
             ", \"postClusterThreshold\": " + num(d.postClusterThreshold) +
             ", \"nmsIOUThreshold\": " + num(d.nmsIOUThreshold) + ", \"topK\": " + std::to_string(d.topK) +
             ", \"roiTopOffset\": " + std::to_string(f.roiTopOffset) +
             ", \"roiBottomOffset\": " + std::to_string(f.roiBottomOffset) +
             ", \"detectionMinWidth\": " + std::to_string(f.detectionMinWidth) +
             ", \"detectionMinHeight\": " + std::to_string(f.detectionMinHeight) +
             ", \"detectionMaxWidth\": " + std::to_string(f.detectionMaxWidth) +
             ", \"detectionMaxHeight\": " + std::to_string(f.detectionMaxHeight) + "}";
    }
    o += "]";

    // The engine file nvinfer builds and saves when model-engine-file cannot be used
    // (NvDsInferContextImpl::buildModel -> TrtModelBuilder::buildModel, nvdsinfer_model_builder.cpp).
    // TensorRT's builder is closed, so buildModel cannot run here; its naming is restated from
    // nvdsinfer_model_builder.cpp (suggestedPathName, lines "modelPath + _b ... .engine") with the
    // mode after configCommonOptions' fallback: INT8 without a calibrator (set only when
    // int8-calib-file is accessible) -> FP16. networkMode2Str and file_accessible are NVIDIA's own.
    {
        NvDsInferNetworkMode mode = p->networkMode;
        std::string fallback;
        if ((mode == NvDsInferNetworkMode_INT8 || mode == NvDsInferNetworkMode_BEST) &&
            !(!nvdsinfer::string_empty(p->int8CalibrationFilePath) &&
              nvdsinfer::file_accessible(p->int8CalibrationFilePath))) {
            mode = NvDsInferNetworkMode_FP16;
            fallback = "INT8 calibration file not specified. Trying FP16 mode.";
        }
        std::string dev = "gpu" + std::to_string(p->gpuID);
        if (p->useDLA && p->dlaCore >= 0) dev = "dla" + std::to_string(p->dlaCore);
        std::string name = std::string(p->onnxFilePath) + "_b" + std::to_string(p->maxBatchSize) + "_" + dev +
                           "_" + nvdsinfer::networkMode2Str(mode) + ".engine";
        o += ", \"built_engine_path\": " + js(name.c_str()) + ", \"mode_fallback\": " + js(fallback.c_str());
    }

    // gst_nvinfer_start: only the cases where it returns before touching CUDA (a failed parse, an
    // instance mask with a cluster mode), so the error it posts is NVIDIA's own text.
    if (!nv->config_file_parse_successful ||
        (nv->output_instance_mask && p->clusterMode != NVDSINFER_CLUSTER_NONE)) {
        GstBus* bus = gst_bus_new();
        gst_element_set_bus(el, bus);
        gboolean ok = GST_BASE_TRANSFORM_GET_CLASS(el)->start(GST_BASE_TRANSFORM(el));
        std::string msg;
        if (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
            GError* err = nullptr;
            gst_message_parse_error(m, &err, nullptr);
            msg = err ? err->message : "";
            if (err) g_error_free(err);
            gst_message_unref(m);
        }
        o += ", \"start\": " + std::string(ok ? "true" : "false") + ", \"start_error\": " + js(msg.c_str());
        gst_element_set_bus(el, nullptr);
        gst_object_unref(bus);
    }
    o += "}";
    printf("%s\n", o.c_str());
    return 0;
}

int cmd_osd(const char* value)
{
    GObject* el = G_OBJECT(g_object_new(GST_TYPE_NVDSOSD, nullptr));
    g_object_set(el, "blur-on-gie-class-ids", value, nullptr);
    GstNvDsOsd* osd = reinterpret_cast<GstNvDsOsd*>(el);
    std::string o = "{\"entries\": [";
    bool first = true;
    // The list is built with g_list_prepend; reverse it to the order of the property string.
    GList* rev = g_list_reverse(g_list_copy(osd->blur_gie_class_list));
    for (GList* it = rev; it; it = it->next) {
        GArray* a = static_cast<GArray*>(it->data);
        o += first ? "[" : ", [";
        first = false;
        for (guint i = 0; i < a->len; ++i) o += (i ? ", " : "") + std::to_string(g_array_index(a, gint, i));
        o += "]";
    }
    g_list_free(rev);
    o += "]}";
    printf("%s\n", o.c_str());
    return 0;
}

int cmd_keyfile(const char* path, const char* group, const char* key, const char* type)
{
    GKeyFile* kf = g_key_file_new();
    GError* err = nullptr;
    std::string value;
    if (g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &err)) {
        if (!strcmp(type, "int")) value = std::to_string(g_key_file_get_integer(kf, group, key, &err));
        else if (!strcmp(type, "bool")) value = g_key_file_get_boolean(kf, group, key, &err) ? "true" : "false";
        else if (!strcmp(type, "double")) value = num(g_key_file_get_double(kf, group, key, &err));
        else {
            gchar* s = g_key_file_get_string(kf, group, key, &err);
            value = js(s);
            g_free(s);
        }
    }
    if (err) printf("{\"error\": %s}\n", js(err->message).c_str());
    else printf("{\"value\": %s}\n", value.c_str());
    if (err) g_error_free(err);
    g_key_file_free(kf);
    return 0;
}

}  // namespace

int main(int argc, char** argv)
{
    gst_init(nullptr, nullptr);
    if (argc == 3 && !strcmp(argv[1], "nvinfer")) return cmd_nvinfer(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "osd")) return cmd_osd(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "app")) return cmd_app(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "postproc")) return cmd_postproc(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "tensormeta")) return cmd_tensormeta(argv[2], argv[3]);
    if (argc == 6 && !strcmp(argv[1], "keyfile")) return cmd_keyfile(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr, "usage: conformance nvinfer CONFIG | osd VALUE | app CONFIG | postproc CONFIG SPEC | "
                    "keyfile FILE GROUP KEY TYPE\n");
    return 2;
}
