// Test driver for the hold/mask component (ds_hold.cpp): builds DeepStream's own metadata structs
// (nvdsmeta.h, nvds_tracker_meta.h) from a text spec, runs FbtoolHold on each frame and prints what it
// blurs as one JSON line per frame. Driven by tests/test_ds_hold.py; the libnvds_meta pool functions
// come from plugins/conformance/stubs.cpp (listed in docs/deepstream.md).
//
// Spec, one command per line:
//   hold N | classes C... | gie G | mask box|own          configuration (before the first batch)
//   batch                                               a new batch (NvDsBatchMeta)
//   frame PAD FRAME_NUM                                 a frame of the batch
//   obj ID|- CLASS GIE L T W H THRESHOLD MW MH [V...]   an object of the last frame (- = untracked)
//   shadow PAD ID...                                    the batch's shadow list for stream PAD
//   run                                                 run the component on the batch, print
//   reset PAD                                           the stream restarted
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <glib.h>

#include "fbtool_ds_hold.h"
#include "nvds_tracker_meta.h"

namespace {

struct Batch {
    NvDsBatchMeta* meta = nullptr;
    std::vector<NvDsFrameMeta*> frames;
    std::map<unsigned, std::vector<uint64_t>> shadow;
    // what nvtracker's user meta points at (miscdatabufmanager.cpp allocateShadowTracks layout)
    std::vector<NvDsTargetMiscDataStream> streams;
    std::vector<std::vector<NvDsTargetMiscDataObject>> objects;
    std::vector<std::unique_ptr<NvDsTargetMiscDataFrame[]>> frames_of_objects;
    NvDsTargetMiscDataBatch misc{};
    NvDsUserMeta user{};
};

void attach_shadow(Batch& b)
{
    if (b.shadow.empty())
        return;
    b.objects.resize(b.shadow.size());
    size_t si = 0;
    for (auto& [pad, ids] : b.shadow) {
        auto& objs = b.objects[si];
        for (uint64_t id : ids) {
            NvDsTargetMiscDataObject o{};
            b.frames_of_objects.emplace_back(new NvDsTargetMiscDataFrame[1]());
            o.list = b.frames_of_objects.back().get();
            o.list[0].trackerState = INACTIVE;
            o.numObj = 1;
            o.numAllocated = 1;
            o.uniqueId = id;
            objs.push_back(o);
        }
        NvDsTargetMiscDataStream s{};
        s.list = objs.data();
        s.streamID = pad;
        s.numAllocated = s.numFilled = objs.size();
        b.streams.push_back(s);
        ++si;
    }
    b.misc.list = b.streams.data();
    b.misc.numAllocated = b.misc.numFilled = b.streams.size();
    b.user.user_meta_data = &b.misc;
    b.user.base_meta.meta_type = NVDS_TRACKER_SHADOW_LIST_META;
    b.user.base_meta.batch_meta = b.meta;
    b.meta->batch_user_meta_list = g_list_append(b.meta->batch_user_meta_list, &b.user);
}

void print_frame(NvDsFrameMeta* f, const std::vector<FbtoolBlurTarget>& targets)
{
    std::ostringstream os;
    os << "{\"pad\":" << f->pad_index << ",\"frame\":" << f->frame_num << ",\"num_obj_meta\":" << f->num_obj_meta
       << ",\"targets\":[";
    for (size_t i = 0; i < targets.size(); ++i) {
        const auto& t = targets[i];
        const auto& r = t.obj->rect_params;
        const auto& m = t.obj->mask_params;
        os << (i ? "," : "") << "{\"id\":"
           << (t.id == UNTRACKED_OBJECT_ID ? std::string("-1") : std::to_string(t.id))
           << ",\"class\":" << t.obj->class_id << ",\"held\":" << (t.held ? "true" : "false")
           << ",\"misses\":" << t.misses << ",\"mask_from\":\"" << t.mask_from << "\",\"box\":[" << r.left << ","
           << r.top << "," << r.width << "," << r.height << "],\"mask_w\":" << m.width << ",\"mask_h\":" << m.height
           << ",\"mask_size\":" << m.size << ",\"mask\":[";
        size_t n = m.data ? size_t(m.width) * m.height : 0;
        for (size_t k = 0; k < n; ++k)
            os << (k ? "," : "") << m.data[k];
        os << "]}";
    }
    os << "]}";
    std::cout << os.str() << "\n";
}

}  // namespace

int main(int argc, char** argv)
{
    std::istream* in = &std::cin;
    std::unique_ptr<std::istream> file;
    if (argc > 1) {
        file.reset(new std::ifstream(argv[1]));
        in = file.get();
    }
    FbtoolHoldConfig cfg;
    std::unique_ptr<FbtoolHold> hold;
    std::vector<std::unique_ptr<Batch>> batches;  // kept alive: held objects live in their frames
    std::string line;
    while (std::getline(*in, line)) {
        std::istringstream ls(line);
        std::string cmd;
        if (!(ls >> cmd) || cmd[0] == '#')
            continue;
        if (cmd == "hold") {
            ls >> cfg.hold;
        } else if (cmd == "classes") {
            int c;
            while (ls >> c)
                cfg.classes.push_back(c);
        } else if (cmd == "gie") {
            ls >> cfg.gie_id;
        } else if (cmd == "mask") {
            std::string rule;
            ls >> rule;
            cfg.whole_box = rule == "box";
        } else if (cmd == "batch") {
            if (!hold)
                hold.reset(new FbtoolHold(cfg));
            batches.emplace_back(new Batch);
            batches.back()->meta = static_cast<NvDsBatchMeta*>(g_malloc0(sizeof(NvDsBatchMeta)));
        } else if (cmd == "frame") {
            Batch& b = *batches.back();
            auto* f = static_cast<NvDsFrameMeta*>(g_malloc0(sizeof(NvDsFrameMeta)));
            ls >> f->pad_index >> f->frame_num;
            f->batch_id = b.frames.size();
            f->base_meta.batch_meta = b.meta;
            b.frames.push_back(f);
            b.meta->frame_meta_list = g_list_append(b.meta->frame_meta_list, f);
            b.meta->num_frames_in_batch++;
        } else if (cmd == "obj") {
            Batch& b = *batches.back();
            std::string id;
            NvDsObjectMeta* o = nvds_acquire_obj_meta_from_pool(b.meta);
            unsigned mw = 0, mh = 0;
            ls >> id >> o->class_id >> o->unique_component_id >> o->rect_params.left >> o->rect_params.top
               >> o->rect_params.width >> o->rect_params.height >> o->mask_params.threshold >> mw >> mh;
            o->object_id = id == "-" ? UNTRACKED_OBJECT_ID : std::stoull(id);
            o->confidence = 0.9f;
            if (mw && mh) {
                o->mask_params.data = static_cast<float*>(g_malloc(sizeof(float) * mw * mh));
                for (unsigned k = 0; k < mw * mh; ++k)
                    ls >> o->mask_params.data[k];
                o->mask_params.size = sizeof(float) * mw * mh;
                o->mask_params.width = mw;
                o->mask_params.height = mh;
            }
            nvds_add_obj_meta_to_frame(b.frames.back(), o, nullptr);
        } else if (cmd == "shadow") {
            unsigned pad;
            uint64_t id;
            ls >> pad;
            auto& ids = batches.back()->shadow[pad];
            while (ls >> id)
                ids.push_back(id);
        } else if (cmd == "run") {
            Batch& b = *batches.back();
            attach_shadow(b);
            for (NvDsFrameMeta* f : b.frames)
                print_frame(f, hold->process(b.meta, f));
        } else if (cmd == "reset") {
            unsigned pad;
            ls >> pad;
            if (hold)
                hold->reset_stream(pad);
        } else {
            std::cerr << "hold_driver: unknown command " << cmd << "\n";
            return 2;
        }
    }
    return 0;
}
