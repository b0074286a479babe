/*
 * fbtool's DeepStream face blur: the C ABI of plugins/dsblur/blur.cu.
 *
 * Called by the nvdsvideotemplate custom library (plugins/dsblur/customlib.cpp) once per frame with
 * the objects nvinfer attached (NvDsObjectMeta rect_params + mask_params), on the frame's own
 * surface. The Python/torch twin, the one reference for this blur, is toolchain/blur/ops/dsblur.py.
 *
 * Per object: the box grown about its centre by FBTOOL_DSBLUR_GROW (the mask grid stretched over it: the
 * face's contour grows with it; fbtool blur's recall-first margin). One k per frame (and plane):
 * the largest of the objects' max(min_k, round(short side / 3)) over the grown boxes (fbtool blur's
 * strength: ~3 blocks across the largest face; one k, so two blurs never meet in a seam);
 * blurred = frame-anchored k x k block means, bilinear back up (OpenCV INTER_LINEAR's sample grid),
 * then a (k|1)-wide box filter (edges average the frame's pixels only); out = frame + m * (blurred -
 * frame), m = the object's mask sampled bilinearly over its float box (0 outside the box, clamped to
 * [0, 1]). A NULL mask (or mask_w/mask_h <= 0) blurs the whole box: an object never stays sharp for
 * want of a mask. Where objects overlap, m is the largest of their masks there. NV12: the Y plane with k, min_k 4; the interleaved UV
 * plane as a half-size image with the box halved, min_k 2. RGBA: R, G, B blurred, alpha kept.
 *
 * Returns 0 on success, else a cudaError_t (or -1 for bad arguments). Every call is asynchronous on
 * `cuda_stream` (NULL: the legacy default stream); mask_host is read before the call returns.
 */
#ifndef FBTOOL_DSBLUR_H
#define FBTOOL_DSBLUR_H

/* The margin around nvinfer's box (toolchain/blur/ops/dsblur.py GROW; docs/deepstream.md says why 1.6). */
#ifndef FBTOOL_DSBLUR_GROW
#define FBTOOL_DSBLUR_GROW 1.6
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  float left, top, width, height; /* frame pixels (NvOSD_RectParams) */
  const float* mask_host;         /* mask_h x mask_w floats over the box, row-major, host memory (NvOSD_MaskParams.data) */
  int mask_w, mask_h;
} FbtoolDsBlurObject;

int fbtool_dsblur_rgba(unsigned char* dev, int pitch, int width, int height, const FbtoolDsBlurObject* objs, int n,
                       void* cuda_stream);

int fbtool_dsblur_nv12(unsigned char* y, int y_pitch, unsigned char* uv, int uv_pitch, int width, int height,
                       const FbtoolDsBlurObject* objs, int n, void* cuda_stream);

#ifdef __cplusplus
}
#endif

#endif /* FBTOOL_DSBLUR_H */
