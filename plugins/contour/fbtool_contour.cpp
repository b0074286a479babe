// fbtool's FaceMesh contour components (see fbtool_contour.h). Every formula is the Python
// reference's, operation by operation in double precision:
//   square_rect, contour_object, polygon_box_grid   toolchain/reference/contour.py
//   object_crop                                      toolchain/nvinfer/emulation/secondary.py
#include "fbtool_contour.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include <gst/gst.h>  // gstnvdsinfer.h uses GstBuffer without including it

#include "gstnvdsinfer.h"

namespace {

// MediaPipe's FACEMESH_FACE_OVAL as a closed polygon (reference/contour.py, FACE_OVAL).
constexpr int kOval[36] = {10,  338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288,
                           397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136,
                           172, 58,  132, 93,  234, 127, 162, 21,  54,  103, 67,  109};
constexpr int kLandmarks = 468;
constexpr int kGrid = FBTOOL_CONTOUR_GRID;

int64_t pack(float a, float b)
{
    uint32_t ua, ub;
    std::memcpy(&ua, &a, 4);
    std::memcpy(&ub, &b, 4);
    return static_cast<int64_t>((static_cast<uint64_t>(ua) << 32) | ub);
}

void unpack(int64_t v, float* a, float* b)
{
    uint32_t ua = static_cast<uint32_t>(static_cast<uint64_t>(v) >> 32), ub = static_cast<uint32_t>(v);
    std::memcpy(a, &ua, 4);
    std::memcpy(b, &ub, 4);
}

void frame_size(const NvDsFrameMeta* frame, const FbtoolContourParams* p, unsigned* w, unsigned* h)
{
    *w = p->frame_width ? p->frame_width : frame->pipeline_width;
    *h = p->frame_height ? p->frame_height : frame->pipeline_height;
}

bool eligible(const NvDsObjectMeta* obj, const FbtoolContourParams* p)
{
    return p->pgie_id < 0 || obj->unique_component_id == p->pgie_id;
}

// reference/contour.py, square_rect
void square_rect(double left, double top, double width, double height, long fw, long fh, double scale,
                 long out[4])
{
    fw &= ~1L;
    fh &= ~1L;
    long s = 2 * static_cast<long>(std::floor(scale * std::fmax(width, height) / 2.0));
    if (s < 2) s = 2;
    if (s > fw) s = fw;
    if (s > fh) s = fh;
    double cx = left + width / 2.0, cy = top + height / 2.0;
    long x = 2 * static_cast<long>(std::floor((cx - s / 2.0) / 2.0 + 0.5));
    long y = 2 * static_cast<long>(std::floor((cy - s / 2.0) / 2.0 + 0.5));
    if (x > fw - s) x = fw - s;
    if (x < 0) x = 0;
    if (y > fh - s) y = fh - s;
    if (y < 0) y = 0;
    out[0] = x; out[1] = y; out[2] = s; out[3] = s;
}

// nvinfer/emulation/secondary.py, object_crop (gstnvinfer.cpp, get_converted_buffer)
struct Crop {
    unsigned left, top, width, height, dest_w, dest_h, off_l, off_t;
};

Crop object_crop(const NvOSD_RectParams& r, unsigned net_w, unsigned net_h, bool maintain, bool symmetric)
{
    Crop c{};
    c.left = GST_ROUND_UP_2(static_cast<unsigned>(r.left));
    c.top = GST_ROUND_UP_2(static_cast<unsigned>(r.top));
    c.width = GST_ROUND_DOWN_2(static_cast<unsigned>(r.width));
    c.height = GST_ROUND_DOWN_2(static_cast<unsigned>(r.height));
    c.dest_w = net_w;
    c.dest_h = net_h;
    if (maintain) {
        double hdest = net_w * c.height / static_cast<double>(c.width);
        double wdest = net_h * c.width / static_cast<double>(c.height);
        if (hdest <= net_h) {
            c.dest_w = net_w;
            c.dest_h = static_cast<unsigned>(hdest);
        } else {
            c.dest_w = static_cast<unsigned>(wdest);
            c.dest_h = net_h;
        }
        if (symmetric) {
            c.off_l = (net_w - c.dest_w) / 2;
            c.off_t = (net_h - c.dest_h) / 2;
        }
    }
    return c;
}

// reference/contour.py, points_in_polygon: the same expression, the closing edge first
bool inside(const double* px, const double* py, int n, double x, double y)
{
    bool in = false;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        if (py[i] == py[j]) continue;
        if ((py[i] > y) != (py[j] > y) && x < (px[j] - px[i]) * (y - py[i]) / (py[j] - py[i]) + px[i]) in = !in;
    }
    return in;
}

const NvDsInferTensorMeta* tensor_meta(const NvDsObjectMeta* obj, unsigned sgie_id)
{
    for (NvDsMetaList* l = obj->obj_user_meta_list; l; l = l->next) {
        auto* um = static_cast<NvDsUserMeta*>(l->data);
        if (um && um->base_meta.meta_type == NVDSINFER_TENSOR_OUTPUT_META) {
            auto* tm = static_cast<NvDsInferTensorMeta*>(um->user_meta_data);
            if (tm && tm->unique_id == sgie_id) return tm;
        }
    }
    return nullptr;
}

// The landmark (468 x 3 floats) and presence (1 float) layers, found by size: FP32 host outputs only.
bool layers(const NvDsInferTensorMeta* tm, const float** lm, const float** presence)
{
    *lm = *presence = nullptr;
    for (unsigned i = 0; i < tm->num_output_layers; ++i) {
        const NvDsInferLayerInfo& info = tm->output_layers_info[i];
        if (info.dataType != FLOAT || !tm->out_buf_ptrs_host[i]) continue;
        if (info.inferDims.numElements == kLandmarks * 3) *lm = static_cast<const float*>(tm->out_buf_ptrs_host[i]);
        else if (info.inferDims.numElements == 1) *presence = static_cast<const float*>(tm->out_buf_ptrs_host[i]);
    }
    return *lm && *presence;
}

void restore(NvDsObjectMeta* obj)
{
    gint64* m = obj->misc_obj_info + FBTOOL_CONTOUR_MISC_SLOT;
    unpack(m[1], &obj->rect_params.left, &obj->rect_params.top);
    unpack(m[2], &obj->rect_params.width, &obj->rect_params.height);
    m[0] = m[1] = m[2] = 0;
}

// reference/contour.py, contour_object (+ oval_polygon through the nvinfer crop); false: fall back
bool contour(NvDsObjectMeta* obj, const FbtoolContourParams* p, unsigned fw, unsigned fh)
{
    const NvDsInferTensorMeta* tm = tensor_meta(obj, p->sgie_id);
    const float *lm, *pres;
    if (!tm || !layers(tm, &lm, &pres)) return false;
    double presence = *pres;
    if (p->presence_is_logit) presence = 1.0 / (1.0 + std::exp(-presence));
    if (!(presence >= p->presence_threshold)) return false;

    Crop c = object_crop(obj->rect_params, tm->network_info.width, tm->network_info.height,
                         tm->maintain_aspect_ratio, tm->symmetric_padding);
    if (!c.width || !c.height || !c.dest_w || !c.dest_h) return false;
    double sx = static_cast<double>(c.width) / c.dest_w, sy = static_cast<double>(c.height) / c.dest_h;
    double px[36], py[36];
    double x1 = INFINITY, y1 = INFINITY, x2 = -INFINITY, y2 = -INFINITY;
    for (int k = 0; k < 36; ++k) {
        const float* l = lm + 3 * kOval[k];
        px[k] = c.left + (l[0] * static_cast<double>(p->landmark_scale) - c.off_l) * sx;
        py[k] = c.top + (l[1] * static_cast<double>(p->landmark_scale) - c.off_t) * sy;
        x1 = std::fmin(x1, px[k]); y1 = std::fmin(y1, py[k]);
        x2 = std::fmax(x2, px[k]); y2 = std::fmax(y2, py[k]);
    }
    x1 = std::fmax(x1, 0.0); y1 = std::fmax(y1, 0.0);
    x2 = std::fmin(x2, static_cast<double>(fw)); y2 = std::fmin(y2, static_cast<double>(fh));
    if (!(x2 > x1 && y2 > y1)) return false;

    NvOSD_MaskParams& mp = obj->mask_params;
    const unsigned bytes = sizeof(float) * kGrid * kGrid;
    if (!mp.data || mp.width != kGrid || mp.height != kGrid || mp.size != bytes) {
        g_free(mp.data);  // nvinfer allocates masks with g_malloc (gstnvinfer_meta_utils.cpp)
        mp.data = static_cast<float*>(g_malloc(bytes));
        mp.width = mp.height = kGrid;
        mp.size = bytes;
    }
    for (int r = 0; r < kGrid; ++r) {
        double y = y1 + (r + 0.5) * (y2 - y1) / kGrid;
        for (int col = 0; col < kGrid; ++col) {
            double x = x1 + (col + 0.5) * (x2 - x1) / kGrid;
            mp.data[r * kGrid + col] = inside(px, py, 36, x, y) ? 1.0f : 0.0f;
        }
    }
    mp.threshold = 0.5f;
    obj->rect_params.left = static_cast<float>(x1);
    obj->rect_params.top = static_cast<float>(y1);
    obj->rect_params.width = static_cast<float>(x2 - x1);
    obj->rect_params.height = static_cast<float>(y2 - y1);
    gint64* m = obj->misc_obj_info + FBTOOL_CONTOUR_MISC_SLOT;
    m[0] = m[1] = m[2] = 0;
    return true;
}

}  // namespace

extern "C" int fbtool_contour_square(NvDsFrameMeta* frame, const FbtoolContourParams* p)
{
    unsigned fw, fh;
    frame_size(frame, p, &fw, &fh);
    if (fw < 2 || fh < 2) return 0;
    int n = 0;
    for (NvDsMetaList* l = frame->obj_meta_list; l; l = l->next) {
        auto* obj = static_cast<NvDsObjectMeta*>(l->data);
        if (!eligible(obj, p)) continue;
        NvOSD_RectParams& r = obj->rect_params;
        gint64* m = obj->misc_obj_info + FBTOOL_CONTOUR_MISC_SLOT;
        m[0] = FBTOOL_CONTOUR_TAG;
        m[1] = pack(r.left, r.top);
        m[2] = pack(r.width, r.height);
        long sq[4];
        square_rect(r.left, r.top, r.width, r.height, fw, fh, p->scale, sq);
        r.left = static_cast<float>(sq[0]);
        r.top = static_cast<float>(sq[1]);
        r.width = static_cast<float>(sq[2]);
        r.height = static_cast<float>(sq[3]);
        ++n;
    }
    return n;
}

extern "C" int fbtool_contour_apply(NvDsFrameMeta* frame, const FbtoolContourParams* p)
{
    unsigned fw, fh;
    frame_size(frame, p, &fw, &fh);
    int n = 0;
    for (NvDsMetaList* l = frame->obj_meta_list; l; l = l->next) {
        auto* obj = static_cast<NvDsObjectMeta*>(l->data);
        if (!eligible(obj, p) || obj->misc_obj_info[FBTOOL_CONTOUR_MISC_SLOT] != FBTOOL_CONTOUR_TAG) continue;
        if (contour(obj, p, fw, fh)) ++n;
        else restore(obj);
    }
    return n;
}
