// `conformance postproc CONFIG SPEC`: NVIDIA's own post-processing of one frame's output layers.
//
// gst_nvinfer_parse_config_file (on a real element) -> InstanceSegmentPostprocessor /
// DetectPostprocessor (nvdsinfer_context_impl.cpp: initResource, which dlopens custom-lib-path with
// RTLD_LAZY and dlsyms the parse function; parseEachBatch -> fillDetectionOutput in
// nvdsinfer_context_impl_output_parsing.cpp: the custom parser, pre-cluster threshold, clustering,
// topk) -> attach_metadata_detector (gstnvinfer_meta_utils.cpp: scale-back, clamping, filters, masks).
//
// SPEC (text): `net W H C`, `frame W H`, `scale SX SY`, `offset LEFT TOP`, then one
// `layer NAME NDIMS D0 D1 ... FILE` per output layer in engine order (FILE: raw float32).
// The scale/offset of the frame in the network input come from the caller: nvinfer computes them
// in get_converted_buffer together with the GPU scaler (closed), so they are not NVIDIA's here.
//
// parseEachBatch is a private member: this translation unit alone reads the class with private
// opened up (an access change only; NVIDIA's files are compiled as they are).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gst/gst.h>

#include "gstnvinfer.h"
#include "gstnvinfer_impl.h"
#include "gstnvinfer_meta_utils.h"
#define private public
#include "nvdsinfer_context_impl.h"
#undef private

using namespace nvdsinfer;

namespace {

std::string num(double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.9g", v);
    return b;
}

}  // namespace

int cmd_postproc(const char* config, const char* spec_path)
{
    GstElement* el = GST_ELEMENT(g_object_new(GST_TYPE_NVINFER, nullptr));
    GstNvInfer* nv = GST_NVINFER(el);
    g_object_set(el, "config-file-path", config, nullptr);
    if (!nv->config_file_parse_successful) {
        printf("{\"error\": \"config parse failed\"}\n");
        return 0;
    }
    auto* impl = reinterpret_cast<gstnvinfer::DsNvInferImpl*>(nv->impl);
    NvDsInferContextInitParams* p = impl->m_InitParams.get();

    unsigned net_w = 0, net_h = 0, net_c = 0, frame_w = 0, frame_h = 0, off_l = 0, off_t = 0;
    double sx = 1, sy = 1;
    std::vector<std::vector<float>> data;
    std::vector<std::string> names;
    std::vector<NvDsInferBatchDimsLayerInfo> layers;
    std::ifstream spec(spec_path);
    std::string line;
    while (std::getline(spec, line)) {
        std::istringstream in(line);
        std::string what;
        in >> what;
        if (what == "net") in >> net_w >> net_h >> net_c;
        else if (what == "frame") in >> frame_w >> frame_h;
        else if (what == "scale") in >> sx >> sy;
        else if (what == "offset") in >> off_l >> off_t;
        else if (what == "layer") {
            NvDsInferBatchDimsLayerInfo L{};
            std::string name, file;
            unsigned nd = 0;
            in >> name >> nd;
            L.inferDims.numDims = nd;
            L.inferDims.numElements = 1;
            for (unsigned i = 0; i < nd; ++i) {
                in >> L.inferDims.d[i];
                L.inferDims.numElements *= L.inferDims.d[i];
            }
            in >> file;
            std::vector<float> buf(L.inferDims.numElements);
            std::ifstream f(file, std::ios::binary);
            f.read(reinterpret_cast<char*>(buf.data()), buf.size() * sizeof(float));
            L.dataType = FLOAT;
            L.bindingIndex = static_cast<int>(layers.size()) + 1;  // 0 is the input
            L.isInput = 0;
            names.push_back(name);
            data.push_back(std::move(buf));
            layers.push_back(L);
        }
    }
    std::vector<NvDsInferLayerInfo> outputs;
    for (size_t i = 0; i < layers.size(); ++i) {
        layers[i].layerName = names[i].c_str();
        layers[i].buffer = data[i].data();
        outputs.push_back(layers[i]);
    }

    std::unique_ptr<InferPostprocessor> post;
    if (p->networkType == NvDsInferNetworkType_InstanceSegmentation)
        post.reset(new InstanceSegmentPostprocessor(p->uniqueID, p->gpuID));
    else
        post.reset(new DetectPostprocessor(p->uniqueID, p->gpuID));
    if (!nvdsinfer::string_empty(p->customLibPath))
        post->setDlHandle(std::make_shared<DlLibHandle>(p->customLibPath, RTLD_LAZY));
    post->setNetworkInfo(NvDsInferNetworkInfo{net_w, net_h, net_c});
    post->setOutputLayerInfo(layers);
    if (post->initResource(*p) != NVDSINFER_SUCCESS) {
        printf("{\"error\": \"initResource failed\"}\n");
        return 0;
    }
    NvDsInferFrameOutput result{};
    post->parseEachBatch(outputs, result);
    NvDsInferDetectionOutput& det = result.detectionOutput;

    std::string o = "{\"post\": [";
    for (unsigned i = 0; i < det.numObjects; ++i) {
        const NvDsInferObject& ob = det.objects[i];
        o += std::string(i ? ", " : "") + "[" + std::to_string(ob.classIndex) + ", " + num(ob.confidence) + ", " +
             num(ob.left) + ", " + num(ob.top) + ", " + num(ob.width) + ", " + num(ob.height) + "]";
    }
    o += "]";

    // attach_metadata_detector on a primary detector's full frame
    NvDsBatchMeta batch{};
    NvDsFrameMeta frame_meta{};
    frame_meta.base_meta.batch_meta = &batch;
    NvBufSurfaceParams surf{};
    surf.width = frame_w;
    surf.height = frame_h;
    GstNvInferFrame frame;
    frame.scale_ratio_x = sx;
    frame.scale_ratio_y = sy;
    frame.offset_left = off_l;
    frame.offset_top = off_t;
    frame.frame_meta = &frame_meta;
    frame.input_surf_params = &surf;
    attach_metadata_detector(nv, nullptr, frame, det, p->segmentationThreshold);

    o += ", \"objects\": [";
    bool first = true;
    for (GList* it = frame_meta.obj_meta_list; it; it = it->next) {
        NvDsObjectMeta* m = static_cast<NvDsObjectMeta*>(it->data);
        const NvOSD_RectParams& r = m->rect_params;
        o += std::string(first ? "" : ", ") + "{\"class_id\": " + std::to_string(m->class_id) +
             ", \"unique_component_id\": " + std::to_string(m->unique_component_id) +
             ", \"confidence\": " + num(m->confidence) + ", \"box\": [" + num(r.left) + ", " + num(r.top) + ", " +
             num(r.width) + ", " + num(r.height) + "], \"mask_size\": " + std::to_string(m->mask_params.size) +
             ", \"mask_width\": " + std::to_string(m->mask_params.width) +
             ", \"mask_height\": " + std::to_string(m->mask_params.height) +
             ", \"mask_threshold\": " + num(m->mask_params.threshold) + ", \"mask\": [";
        first = false;
        const unsigned n = m->mask_params.size / sizeof(float);
        for (unsigned k = 0; k < n; ++k) o += (k ? ", " : "") + num(m->mask_params.data[k]);
        o += "]}";
    }
    o += "]}";
    printf("%s\n", o.c_str());
    return 0;
}
