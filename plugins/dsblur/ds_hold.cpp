// See fbtool_ds_hold.h. Built into libnvds_fbtool_dsblur.so (customlib.cpp) and, for the unit tests,
// into hold_driver with the listed libnvds_meta stubs of plugins/conformance/stubs.cpp.
#include "fbtool_ds_hold.h"

#include <algorithm>
#include <cstring>
#include <set>

#include <glib.h>

#include "nvds_tracker_meta.h"

unsigned fbtool_binarise_mask(NvOSD_MaskParams& m)
{
    if (m.data == nullptr || m.width == 0 || m.height == 0)
        return 0;
    size_t n = std::min<size_t>(size_t(m.width) * m.height, m.size / sizeof(float));
    // nvinfer sets threshold from segmentation-threshold; 0 would make every cell "face"
    float thr = m.threshold > 0.f ? m.threshold : 0.5f;
    unsigned set = 0;
    for (size_t i = 0; i < n; ++i) {
        m.data[i] = m.data[i] >= thr ? 1.f : 0.f;
        set += m.data[i] != 0.f;
    }
    return set;
}

std::vector<uint64_t> fbtool_shadow_ids(NvDsBatchMeta* batch, unsigned pad)
{
    std::vector<uint64_t> ids;
    for (GList* l = batch->batch_user_meta_list; l != nullptr; l = l->next) {
        auto* um = static_cast<NvDsUserMeta*>(l->data);
        if (um == nullptr || um->base_meta.meta_type != NVDS_TRACKER_SHADOW_LIST_META || !um->user_meta_data)
            continue;
        auto* b = static_cast<NvDsTargetMiscDataBatch*>(um->user_meta_data);
        for (uint32_t si = 0; si < b->numFilled && b->list; ++si) {
            const NvDsTargetMiscDataStream& s = b->list[si];
            // nvtracker sets streamID = getStreamId(surfaceStreamID), the frame's pad_index
            if (s.streamID != pad)
                continue;
            for (uint32_t oi = 0; oi < s.numFilled && s.list; ++oi)
                ids.push_back(s.list[oi].uniqueId);
        }
    }
    return ids;
}

bool FbtoolHold::blurred(const NvDsObjectMeta* o) const
{
    if (cfg_.gie_id >= 0 && o->unique_component_id != cfg_.gie_id)
        return false;
    return cfg_.classes.empty() || std::find(cfg_.classes.begin(), cfg_.classes.end(), o->class_id) != cfg_.classes.end();
}

static void set_mask(NvOSD_MaskParams& m, const std::vector<float>& cells, unsigned w, unsigned h)
{
    // nvinfer allocates object masks with g_malloc (gstnvinfer_meta_utils.cpp); the meta pool owns them
    size_t bytes = size_t(w) * h * sizeof(float);
    if (m.data == nullptr || m.size < bytes) {
        if (m.data != nullptr)
            g_free(m.data);
        m.data = static_cast<float*>(g_malloc(bytes));
    }
    std::memcpy(m.data, cells.data(), bytes);
    m.size = bytes;
    m.width = w;
    m.height = h;
    m.threshold = 0.5f;
}

static const std::vector<float> kWholeBox{1.f};

std::vector<FbtoolBlurTarget> FbtoolHold::process(NvDsBatchMeta* batch, NvDsFrameMeta* frame)
{
    std::vector<FbtoolBlurTarget> out;
    const unsigned pad = frame->pad_index;
    const int now = frame->frame_num;
    std::set<uint64_t> present;
    for (GList* l = frame->obj_meta_list; l != nullptr; l = l->next) {
        auto* o = static_cast<NvDsObjectMeta*>(l->data);
        if (o == nullptr || !blurred(o))
            continue;
        FbtoolBlurTarget t{o, o->object_id, false, 0, "own"};
        const bool tracked = o->object_id != UNTRACKED_OBJECT_ID;
        auto it = tracked ? tracks_.find({pad, o->object_id}) : tracks_.end();
        if (cfg_.whole_box) {
            set_mask(o->mask_params, kWholeBox, 1, 1);
            t.mask_from = "box";
        } else if (fbtool_binarise_mask(o->mask_params) == 0) {
            if (it != tracks_.end() && !it->second.mask.empty()) {
                set_mask(o->mask_params, it->second.mask, it->second.mask_w, it->second.mask_h);
                t.mask_from = "held";
            } else {
                set_mask(o->mask_params, kWholeBox, 1, 1);
                t.mask_from = "box";
            }
        }
        if (tracked) {
            present.insert(o->object_id);
            Track& tr = tracks_[{pad, o->object_id}];
            tr.box = o->rect_params;
            tr.last = now;
            tr.class_id = o->class_id;
            tr.gie = o->unique_component_id;
            tr.confidence = o->confidence;
            if (std::strcmp(t.mask_from, "own") == 0) {
                size_t n = size_t(o->mask_params.width) * o->mask_params.height;
                tr.mask.assign(o->mask_params.data, o->mask_params.data + n);
                tr.mask_w = o->mask_params.width;
                tr.mask_h = o->mask_params.height;
            }
        }
        out.push_back(t);
    }
    for (uint64_t id : fbtool_shadow_ids(batch, pad)) {
        auto it = tracks_.find({pad, id});
        if (present.count(id) || it == tracks_.end())
            continue;
        const Track& tr = it->second;
        const int misses = now - tr.last;
        if (misses < 1 || misses > cfg_.hold)
            continue;
        NvDsObjectMeta* o = nvds_acquire_obj_meta_from_pool(batch);
        o->unique_component_id = tr.gie;
        o->class_id = tr.class_id;
        o->object_id = id;
        o->confidence = tr.confidence;
        o->tracker_confidence = 0.f;
        o->rect_params = tr.box;
        o->mask_params = NvOSD_MaskParams{};
        if (tr.mask.empty())
            set_mask(o->mask_params, kWholeBox, 1, 1);
        else
            set_mask(o->mask_params, tr.mask, tr.mask_w, tr.mask_h);
        nvds_add_obj_meta_to_frame(frame, o, nullptr);
        out.push_back({o, id, true, misses, tr.mask.empty() ? "box" : "held"});
        present.insert(id);
    }
    // a track not seen for more than `hold` frames is never blurred again: forget it
    for (auto it = tracks_.begin(); it != tracks_.end();) {
        if (it->first.first == pad && now - it->second.last > cfg_.hold)
            it = tracks_.erase(it);
        else
            ++it;
    }
    return out;
}

void FbtoolHold::reset_stream(unsigned pad)
{
    for (auto it = tracks_.begin(); it != tracks_.end();)
        it = it->first.first == pad ? tracks_.erase(it) : std::next(it);
}
