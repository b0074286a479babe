// `conformance tensormeta CONFIG SPEC`: NVIDIA's own attach_tensor_output_meta (gstnvinfer_meta_utils.cpp)
// puts FaceMesh's raw output on the objects as a secondary nvinfer does (CONFIG read by
// gst_nvinfer_parse_config_file on a real element: unique_id, output-tensor-meta, maintain-aspect-ratio,
// symmetric-padding), between fbtool's two contour components (plugins/contour): square -> NVIDIA's
// tensor meta -> apply. So the component reads metadata laid out by NVIDIA's code, not by fbtool's.
//
// SPEC (text): `frame W H`, `net W H`, `params PGIE SCALE THRESHOLD LOGIT LANDMARK_SCALE`,
// `obj GIE LEFT TOP WIDTH HEIGHT MASK` per object (MASK < 0: none, else a 32x32 mask of that value),
// `outputs N FILE`: the engine's output for the first N objects of the operate-on gie, as nvinfer's
// host buffers hold them: N presence floats, then N x 468 x 3 landmark floats (float32).
// The engine's output layers (gst_nvinfer_start fills them from the engine, closed) are set here:
// presence (binding 1, 1 element) and landmarks (binding 2, 468 x 3), network 192x192x3.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gst/gst.h>

#include "gstnvinfer.h"
#include "gstnvinfer_impl.h"
#include "gstnvinfer_meta_utils.h"
#include "../contour/fbtool_contour.h"

int cmd_tensormeta(const char* config, const char* spec_path)
{
    GstElement* el = GST_ELEMENT(g_object_new(GST_TYPE_NVINFER, nullptr));
    g_object_set(el, "config-file-path", config, nullptr);
    GstNvInfer* nv = GST_NVINFER(el);

    NvDsBatchMeta batch_meta{};
    NvDsFrameMeta frame{};
    frame.base_meta.batch_meta = &batch_meta;
    FbtoolContourParams p{};
    p.sgie_id = nv->unique_id;
    std::vector<NvDsObjectMeta*> objs;
    std::vector<float> host;
    unsigned n_out = 0;

    FILE* f = fopen(spec_path, "r");
    if (!f) return 2;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char cmd[32] = {0};
        if (sscanf(line, "%31s", cmd) != 1) continue;
        if (!strcmp(cmd, "frame")) {
            sscanf(line, "%*s %u %u", &p.frame_width, &p.frame_height);
        } else if (!strcmp(cmd, "net")) {
            sscanf(line, "%*s %u %u", &nv->network_info.width, &nv->network_info.height);
            nv->network_info.channels = 3;
        } else if (!strcmp(cmd, "params")) {
            sscanf(line, "%*s %d %f %f %d %f", &p.pgie_id, &p.scale, &p.presence_threshold, &p.presence_is_logit,
                   &p.landmark_scale);
        } else if (!strcmp(cmd, "obj")) {
            auto* o = static_cast<NvDsObjectMeta*>(g_malloc0(sizeof(NvDsObjectMeta)));
            o->base_meta.batch_meta = &batch_meta;
            float mask;
            sscanf(line, "%*s %d %f %f %f %f %f", &o->unique_component_id, &o->rect_params.left, &o->rect_params.top,
                   &o->rect_params.width, &o->rect_params.height, &mask);
            if (mask >= 0) {
                o->mask_params.width = o->mask_params.height = 32;
                o->mask_params.size = sizeof(float) * 32 * 32;
                o->mask_params.data = static_cast<float*>(g_malloc(o->mask_params.size));
                for (int k = 0; k < 32 * 32; ++k) o->mask_params.data[k] = mask;
            }
            frame.obj_meta_list = g_list_append(frame.obj_meta_list, o);
            objs.push_back(o);
        } else if (!strcmp(cmd, "outputs")) {
            char path[2048];
            sscanf(line, "%*s %u %2047s", &n_out, path);
            host.resize(n_out * (1 + 468 * 3));
            FILE* hf = fopen(path, "rb");
            if (!hf || fread(host.data(), sizeof(float), host.size(), hf) != host.size()) return 3;
            fclose(hf);
        }
    }
    fclose(f);

    fbtool_contour_square(&frame, &p);

    // The engine's output layers, as gst_nvinfer_start would take them from the context.
    NvDsInferLayerInfo pres{}, lm{};
    pres.dataType = FLOAT;
    pres.inferDims.numDims = 1;
    pres.inferDims.d[0] = 1;
    pres.inferDims.numElements = 1;
    pres.bindingIndex = 1;
    pres.layerName = "presence";
    lm.dataType = FLOAT;
    lm.inferDims.numDims = 2;
    lm.inferDims.d[0] = 468;
    lm.inferDims.d[1] = 3;
    lm.inferDims.numElements = 468 * 3;
    lm.bindingIndex = 2;
    lm.layerName = "landmarks";
    nv->output_layers_info = new std::vector<NvDsInferLayerInfo>{pres, lm};

    // The batch gst_nvinfer_process_objects forms: the first n_out objects of the operate-on gie.
    GstNvInferBatch batch;
    for (NvDsObjectMeta* o : objs) {
        if (batch.frames.size() == n_out) break;
        if (nv->operate_on_gie_id > -1 && o->unique_component_id != nv->operate_on_gie_id) continue;
        GstNvInferFrame fr;
        fr.obj_meta = o;
        fr.frame_meta = &frame;
        batch.frames.push_back(fr);
    }
    void* host_bufs[3] = {nullptr, host.data(), host.data() + n_out};
    void* dev_bufs[2] = {host.data(), host.data() + n_out};  // not read on the host path
    NvDsInferContextBatchOutput out{};
    out.hostBuffers = host_bufs;
    out.numHostBuffers = 3;
    out.outputDeviceBuffers = dev_bufs;
    out.numOutputDeviceBuffers = 2;
    GstBuffer* tensor_out = gst_buffer_new();
    attach_tensor_output_meta(nv, GST_MINI_OBJECT(tensor_out), &batch, &out);

    int contoured = fbtool_contour_apply(&frame, &p);

    printf("{\"unique_id\": %u, \"operate_on_gie_id\": %d, \"contoured\": %d, \"objects\": [", nv->unique_id,
           nv->operate_on_gie_id, contoured);
    for (size_t i = 0; i < objs.size(); ++i) {
        const NvDsObjectMeta* o = objs[i];
        const NvOSD_RectParams& r = o->rect_params;
        int metas = 0;
        unsigned uid = 0, maintain = 0, symmetric = 0;
        for (GList* l = o->obj_user_meta_list; l; l = l->next) {
            auto* um = static_cast<NvDsUserMeta*>(l->data);
            if (um->base_meta.meta_type != NVDSINFER_TENSOR_OUTPUT_META) continue;
            auto* tm = static_cast<NvDsInferTensorMeta*>(um->user_meta_data);
            ++metas;
            uid = tm->unique_id;
            maintain = tm->maintain_aspect_ratio;
            symmetric = tm->symmetric_padding;
        }
        printf("%s{\"rect\": [%.9g, %.9g, %.9g, %.9g], \"tensor_metas\": %d, \"meta_unique_id\": %u, "
               "\"meta_maintain\": %u, \"meta_symmetric\": %u, \"mask_wh\": [%u, %u], \"mask\": [",
               i ? ", " : "", r.left, r.top, r.width, r.height, metas, uid, maintain, symmetric,
               o->mask_params.width, o->mask_params.height);
        unsigned n = o->mask_params.data ? o->mask_params.width * o->mask_params.height : 0;
        for (unsigned k = 0; k < n; ++k) printf("%s%.9g", k ? ", " : "", o->mask_params.data[k]);
        printf("]}");
    }
    printf("]}\n");
    return 0;
}
