/* fbtool's FaceMesh contour components for DeepStream (issue 16): a C ABI that a pad probe or the
 * nvdsvideotemplate custom library (plugins/dsblur/) calls on each frame's metadata.
 *
 *   pgie (face detector, mask) -> nvtracker -> [fbtool_contour_square] -> nvinfer SGIE (FaceMesh,
 *   process-mode=2, network-type=100, output-tensor-meta=1) -> [fbtool_contour_apply] -> nvdsosd
 *
 * fbtool_contour_square turns each detector object's box into MediaPipe's square crop (1.5x the long
 * side), snapped to even pixels inside the frame so nvinfer crops exactly it, and keeps the original
 * box in misc_obj_info. fbtool_contour_apply reads the SGIE's NvDsInferTensorMeta (468 x 3 landmarks +
 * presence), recomputes nvinfer's crop, and gives the object the face oval's bounds and 32 x 32 mask;
 * where FaceMesh sees no face (or did not run) it restores the detector's box and keeps its mask.
 * The rules are toolchain/reference/contour.py's (square_rect, contour_object) and
 * toolchain/nvinfer/emulation/secondary.py's (object_crop); tests/test_contour_component.py compares. */
#ifndef FBTOOL_CONTOUR_H
#define FBTOOL_CONTOUR_H

#include "nvdsmeta.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int pgie_id;              /* the detector's gie-unique-id: only its objects are squared / contoured */
    unsigned sgie_id;         /* FaceMesh nvinfer's gie-unique-id (NvDsInferTensorMeta.unique_id) */
    float scale;              /* crop side / long side of the box: 1.5 (MediaPipe) */
    float presence_threshold; /* face presence (after the sigmoid when presence_is_logit) below: fallback */
    int presence_is_logit;    /* the presence layer is a logit (1) or a probability (0) */
    float landmark_scale;     /* network-input pixels per landmark unit (1: pixels, 192: normalised) */
    unsigned frame_width;     /* the streammux frame; 0: frame_meta->pipeline_width/height */
    unsigned frame_height;
} FbtoolContourParams;

/* misc_obj_info slots holding the detector's box between the two calls: [slot] = tag,
 * [slot + 1] = left | top, [slot + 2] = width | height (float bits). */
#define FBTOOL_CONTOUR_MISC_SLOT 1
#define FBTOOL_CONTOUR_TAG 0x46424351LL /* 'FBCQ' */
#define FBTOOL_CONTOUR_GRID 32          /* nvdsosd samples a mask on a 32 x 32 grid per box */

/* Squares the frame's detector objects; returns how many. */
int fbtool_contour_square(NvDsFrameMeta* frame, const FbtoolContourParams* params);
/* Contours the squared objects; returns how many got the FaceMesh contour (the others fell back). */
int fbtool_contour_apply(NvDsFrameMeta* frame, const FbtoolContourParams* params);

#ifdef __cplusplus
}
#endif
#endif
