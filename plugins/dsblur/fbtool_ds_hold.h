// The hold/mask rule of fbtool's DeepStream blur, on DeepStream's own metadata (nvdsmeta.h,
// nvds_tracker_meta.h). Per frame it returns every object to blur:
// - each object of a blurred class in the frame's object list (detections, and untracked objects that
//   nvtracker keeps when operate-on-class-ids is set: a new face is blurred from its first frame);
// - each face nvtracker shadow-tracks (NVDS_TRACKER_SHADOW_LIST_META) that was last seen at most `hold`
//   frames ago, re-created as an object with its last box and last mask (nvtracker outputs no object
//   for a shadow-tracked target and never carries masks);
// and gives each one a binary (0/1), non-empty mask (the kernel grows the box by its recall-first margin,
// FBTOOL_DSBLUR_GROW in fbtool_dsblur.h): nvdsosd's blur skips only mask cells == 0, and an
// object without a mask would read a stray one (nvll_osd_int.cpp).
// Two mask rules (FbtoolHoldConfig.whole_box, customlib-props mask:box|own):
// - box (the default, one model): every blurred object's mask is the whole box. nvinfer's boxes of small,
//   fast faces sit off the face, and a contour inside the box misses their corners (docs/deepstream.md);
// - own (two models: the contour stage's masks): the object's mask binarised; an empty mask falls back
//   to the track's last mask, else to the whole box.
// The Python emulation of the same rule is toolchain/nvinfer/emulation/tracker.py (HoldRule).
#ifndef FBTOOL_DS_HOLD_H
#define FBTOOL_DS_HOLD_H

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "nvdsmeta.h"

struct FbtoolHoldConfig {
    int hold = 8;               // frames a shadow-tracked face stays blurred after it was last seen
    std::vector<int> classes;   // class ids to blur (empty: every class)
    int gie_id = -1;            // unique_component_id of the detector (-1: any)
    bool whole_box = true;      // mask rule: the whole box (true) or the object's own mask (false)
};

struct FbtoolBlurTarget {
    NvDsObjectMeta* obj;   // the frame's object (a held face: the object this component added)
    uint64_t id;           // tracking id, UNTRACKED_OBJECT_ID for an untracked detection
    bool held;             // re-created from the shadow list
    int misses;            // frames since the face was last seen (0 for a present object)
    const char* mask_from; // "own", "held" (the track's last mask) or "box" (no usable mask: whole box)
};

class FbtoolHold {
public:
    explicit FbtoolHold(FbtoolHoldConfig cfg) : cfg_(std::move(cfg)) {}
    // The objects to blur in `frame` (a frame of `batch`); held faces are added to the frame's object
    // list (nvds_acquire_obj_meta_from_pool / nvds_add_obj_meta_to_frame) and every returned object's
    // mask_params is binary and non-empty afterwards.
    std::vector<FbtoolBlurTarget> process(NvDsBatchMeta* batch, NvDsFrameMeta* frame);
    // A stream restarted (EOS / pad removed): forget its tracks.
    void reset_stream(unsigned pad);
    const FbtoolHoldConfig& config() const { return cfg_; }

private:
    struct Track {
        NvOSD_RectParams box;
        std::vector<float> mask;  // binary
        unsigned mask_w = 0, mask_h = 0;
        int last = 0;  // frame_num where it was last seen
        int class_id = 0;
        int gie = 0;
        float confidence = 0;
    };
    bool blurred(const NvDsObjectMeta* o) const;
    FbtoolHoldConfig cfg_;
    std::map<std::pair<unsigned, uint64_t>, Track> tracks_;  // (pad_index, tracking id)
};

// Ids nvtracker shadow-tracks in stream `pad` this batch (NVDS_TRACKER_SHADOW_LIST_META user meta).
std::vector<uint64_t> fbtool_shadow_ids(NvDsBatchMeta* batch, unsigned pad);

// Binarise `m` in place (>= its threshold, 0.5 when unset -> 1, else 0); returns the number of cells set.
unsigned fbtool_binarise_mask(NvOSD_MaskParams& m);

#endif
