// Test driver for fbtool_contour (tests/test_contour_component.py): builds DeepStream metadata the
// way nvinfer leaves it (NvDsFrameMeta with NvDsObjectMeta, g_malloc'd masks, NvDsInferTensorMeta in
// obj_user_meta_list, as gstnvinfer_meta_utils.cpp's attach_tensor_output_meta does) from a spec
// file, calls the components and prints the objects as JSON. No DeepStream library is involved.
//
//   params PGIE SGIE SCALE THRESHOLD LOGIT LANDMARK_SCALE FRAME_W FRAME_H
//   obj GIE LEFT TOP WIDTH HEIGHT MASK       MASK < 0: no mask, else a 32x32 mask of MASK + k*1e-4
//   square | apply                           call the component on the frame
//   rect OBJ LEFT TOP WIDTH HEIGHT           move a box (what another element between the two might do)
//   tensor OBJ UNIQUE_ID NET_W NET_H MAINTAIN SYMMETRIC PRESENCE FILE   FILE: 1404 float32 (468 x 3)
//   print
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fbtool_contour.h"
#include <gst/gst.h>  // gstnvdsinfer.h uses GstBuffer without including it

#include "gstnvdsinfer.h"

namespace {

std::vector<NvDsObjectMeta*> g_objs;
std::vector<std::vector<float>> g_bufs;

void print(const char* what, int ret)
{
    printf("{\"after\": \"%s\", \"returned\": %d, \"objects\": [", what, ret);
    for (size_t i = 0; i < g_objs.size(); ++i) {
        const NvDsObjectMeta* o = g_objs[i];
        const NvOSD_RectParams& r = o->rect_params;
        printf("%s{\"rect\": [%.9g, %.9g, %.9g, %.9g], \"misc\": [%lld, %lld, %lld, %lld], \"mask_wh\": [%u, %u], "
               "\"threshold\": %.9g, \"mask\": [", i ? ", " : "", r.left, r.top, r.width, r.height,
               (long long)o->misc_obj_info[0], (long long)o->misc_obj_info[1], (long long)o->misc_obj_info[2],
               (long long)o->misc_obj_info[3], o->mask_params.width, o->mask_params.height,
               o->mask_params.threshold);
        unsigned n = o->mask_params.data ? o->mask_params.width * o->mask_params.height : 0;
        for (unsigned k = 0; k < n; ++k) printf("%s%.9g", k ? ", " : "", o->mask_params.data[k]);
        printf("]}");
    }
    printf("]}\n");
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: contour_driver SPEC\n");
        return 2;
    }
    FILE* f = fopen(argv[1], "r");
    if (!f) return 2;
    NvDsFrameMeta frame{};
    FbtoolContourParams p{};
    char line[4096];
    int last = 0;
    const char* last_what = "none";
    while (fgets(line, sizeof line, f)) {
        char cmd[32] = {0};
        if (sscanf(line, "%31s", cmd) != 1) continue;
        if (!strcmp(cmd, "params")) {
            sscanf(line, "%*s %d %u %f %f %d %f %u %u", &p.pgie_id, &p.sgie_id, &p.scale, &p.presence_threshold,
                   &p.presence_is_logit, &p.landmark_scale, &p.frame_width, &p.frame_height);
        } else if (!strcmp(cmd, "obj")) {
            auto* o = static_cast<NvDsObjectMeta*>(g_malloc0(sizeof(NvDsObjectMeta)));
            float mask;
            sscanf(line, "%*s %d %f %f %f %f %f", &o->unique_component_id, &o->rect_params.left, &o->rect_params.top,
                   &o->rect_params.width, &o->rect_params.height, &mask);
            o->object_id = g_objs.size();
            if (mask >= 0) {
                o->mask_params.width = o->mask_params.height = 32;
                o->mask_params.size = sizeof(float) * 32 * 32;
                o->mask_params.threshold = 0.5f;
                o->mask_params.data = static_cast<float*>(g_malloc(o->mask_params.size));
                for (int k = 0; k < 32 * 32; ++k) o->mask_params.data[k] = mask + k * 1e-4f;
            }
            frame.obj_meta_list = g_list_append(frame.obj_meta_list, o);
            frame.num_obj_meta++;
            g_objs.push_back(o);
        } else if (!strcmp(cmd, "tensor")) {
            unsigned idx, uid, nw, nh;
            int maintain, symmetric;
            float presence;
            char path[2048];
            sscanf(line, "%*s %u %u %u %u %d %d %f %2047s", &idx, &uid, &nw, &nh, &maintain, &symmetric, &presence, path);
            g_bufs.emplace_back(468 * 3);
            FILE* lf = fopen(path, "rb");
            if (!lf || fread(g_bufs.back().data(), sizeof(float), 468 * 3, lf) != 468 * 3) return 3;
            fclose(lf);
            g_bufs.emplace_back(1, presence);
            auto* tm = new NvDsInferTensorMeta{};
            tm->unique_id = uid;
            tm->num_output_layers = 2;
            tm->output_layers_info = new NvDsInferLayerInfo[2]{};
            tm->output_layers_info[0].dataType = FLOAT;
            tm->output_layers_info[0].inferDims.numDims = 2;
            tm->output_layers_info[0].inferDims.d[0] = 468;
            tm->output_layers_info[0].inferDims.d[1] = 3;
            tm->output_layers_info[0].inferDims.numElements = 468 * 3;
            tm->output_layers_info[0].layerName = "landmarks";
            tm->output_layers_info[1].dataType = FLOAT;
            tm->output_layers_info[1].inferDims.numDims = 1;
            tm->output_layers_info[1].inferDims.d[0] = 1;
            tm->output_layers_info[1].inferDims.numElements = 1;
            tm->output_layers_info[1].layerName = "presence";
            tm->out_buf_ptrs_host = new void*[2]{g_bufs[g_bufs.size() - 2].data(), g_bufs.back().data()};
            tm->network_info.width = nw;
            tm->network_info.height = nh;
            tm->network_info.channels = 3;
            tm->maintain_aspect_ratio = maintain;
            tm->symmetric_padding = symmetric;
            auto* um = static_cast<NvDsUserMeta*>(g_malloc0(sizeof(NvDsUserMeta)));
            um->base_meta.meta_type = NVDSINFER_TENSOR_OUTPUT_META;
            um->user_meta_data = tm;
            g_objs.at(idx)->obj_user_meta_list = g_list_append(g_objs.at(idx)->obj_user_meta_list, um);
        } else if (!strcmp(cmd, "rect")) {
            unsigned idx;
            NvOSD_RectParams r{};
            sscanf(line, "%*s %u %f %f %f %f", &idx, &r.left, &r.top, &r.width, &r.height);
            NvOSD_RectParams& o = g_objs.at(idx)->rect_params;
            o.left = r.left; o.top = r.top; o.width = r.width; o.height = r.height;
        } else if (!strcmp(cmd, "square")) {
            last = fbtool_contour_square(&frame, &p);
            last_what = "square";
        } else if (!strcmp(cmd, "apply")) {
            last = fbtool_contour_apply(&frame, &p);
            last_what = "apply";
        } else if (!strcmp(cmd, "print")) {
            print(last_what, last);
        }
    }
    fclose(f);
    return 0;
}
