// fbtool's DeepStream blur: the C ABI between the nvdsvideotemplate custom library (customlib.cpp,
// which decides WHAT is blurred: detections, held faces, their binary masks) and the CUDA kernel
// (blur.cu, which decides HOW: the same algorithm as `fbtool blur`'s GPU path, twin in
// toolchain/blur/ops/dsblur.py). Plain C so either side can be built by another compiler.
#ifndef FBTOOL_DSBLUR_H
#define FBTOOL_DSBLUR_H

#ifdef __cplusplus
extern "C" {
#endif

// One face to blur, in frame pixels. The mask covers the box (mask_w x mask_h cells, row-major, host
// memory, 0 = keep, non-zero = blur); mask_host == NULL or mask_w/h == 0 means the whole box.
typedef struct FbtoolDsBlurObject {
    float left, top, width, height;
    const float* mask_host;
    int mask_w, mask_h;
} FbtoolDsBlurObject;

// In place on a pitched RGBA surface in device memory; 0 on success, a cudaError_t value otherwise.
int fbtool_dsblur_rgba(unsigned char* dev, int pitch, int width, int height, const FbtoolDsBlurObject* objs,
                       int n, void* cuda_stream);

// In place on an NV12 surface (Y plane and interleaved UV plane, each pitched, device memory).
int fbtool_dsblur_nv12(unsigned char* y, int y_pitch, unsigned char* uv, int uv_pitch, int width, int height,
                       const FbtoolDsBlurObject* objs, int n, void* cuda_stream);

#ifdef __cplusplus
}
#endif

#endif
