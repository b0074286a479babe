// Thin C entry points into NVIDIA's own DeepStream 9.1 GPU code, for scripts/dsblur_gpu.py on a GPU.
//
// Nothing of NVIDIA's is copied here: build against the sources in ../shared/third_party (see
// plugins/nvcheck/Makefile), which the script copies beside the build at run time.
// - nvcheck_osd_blur: nvdsosd's blur as nvll_osd_blur_rectangles_gpu (nvll_osd_int.cpp) drives it:
//   per object the integer box (int x1 = left, x2 = width + x1), the mask copied to the device with
//   its width/height, cuosd_draw_boxblur(...) with the default kernel size, then cuosd_apply (which
//   launches render_blur_kernel, cuosd_kernel.cu) on the pitched RGBA or pitch-linear NV12 surface.
//   An object without a mask passes d_seg = NULL, as nvll_osd does without a mask list.
// - nvcheck_convert: nvinfer's normalisation (nvdsinfer_conversion.cu), the function
//   nvdsinfer_context_impl.cpp picks for the network / input colour formats, with the per-pixel mean
//   buffer built as it builds it from `offsets`.
#include <cuda_runtime.h>

#include <vector>

#include "cuosd.h"
#include "nvdsinfer_conversion.h"

extern "C" {

typedef struct {
  float left, top, width, height;
  const float* mask_host;
  int mask_w, mask_h;
} NvcheckObject;

// format: 0 = RGBA (data0 pitched RGBA), 1 = pitch-linear NV12 (data0 Y, data1 UV, one stride).
int nvcheck_osd_blur(void* data0, void* data1, int width, int stride, int height, int format,
                     const NvcheckObject* objs, int n, void* stream) {
  cuOSDContext_t ctx = cuosd_context_create();
  std::vector<float*> segs;
  for (int i = 0; i < n; ++i) {
    const NvcheckObject& o = objs[i];
    int x1 = o.left, y1 = o.top;  // nvll_osd_blur_rectangles_gpu's int conversion
    int x2 = o.width + x1, y2 = o.height + y1;
    float* d_seg = nullptr;
    if (o.mask_host && o.mask_w > 0 && o.mask_h > 0) {
      size_t bytes = sizeof(float) * o.mask_w * o.mask_h;
      if (cudaMalloc(&d_seg, bytes) != cudaSuccess) return -2;
      cudaMemcpy(d_seg, o.mask_host, bytes, cudaMemcpyHostToDevice);
      segs.push_back(d_seg);
    }
    cuosd_draw_boxblur(ctx, x1, y1, x2, y2, d_seg, d_seg ? o.mask_w : 0, d_seg ? o.mask_h : 0);
  }
  cuosd_apply(ctx, data0, data1, width, stride, height,
              format == 0 ? cuOSDImageFormat::RGBA : cuOSDImageFormat::PitchLinearNV12, stream, true);
  cudaError_t e = cudaStreamSynchronize((cudaStream_t)stream);
  if (e == cudaSuccess) e = cudaGetLastError();
  for (float* p : segs) cudaFree(p);
  cuosd_context_destroy(ctx);
  return (int)e;
}

// in_channels 3 (RGB surface, dGPU) or 4 (RGBA, VIC); network_bgr: model-color-format=1; nchw output.
int nvcheck_convert(float* out, unsigned char* in, int width, int height, int pitch, int in_channels,
                    int network_bgr, float scale, const float* offsets, void* stream) {
  std::vector<float> mean((size_t)width * height * 3);
  for (size_t j = 0; j < (size_t)width * height; ++j)
    for (int c = 0; c < 3; ++c) mean[j * 3 + c] = offsets[c];
  float* d_mean = nullptr;
  if (cudaMalloc(&d_mean, mean.size() * sizeof(float)) != cudaSuccess) return -2;
  cudaMemcpy(d_mean, mean.data(), mean.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaStream_t s = (cudaStream_t)stream;
  // nvdsinfer_context_impl.cpp: network RGB + input RGB/RGBA -> C3/C4ToP3Float; network BGR -> the R variants.
  if (in_channels == 3 && !network_bgr) NvDsInferConvert_C3ToP3Float(out, in, width, height, pitch, scale, d_mean, s);
  else if (in_channels == 3) NvDsInferConvert_C3ToP3RFloat(out, in, width, height, pitch, scale, d_mean, s);
  else if (!network_bgr) NvDsInferConvert_C4ToP3Float(out, in, width, height, pitch, scale, d_mean, s);
  else NvDsInferConvert_C4ToP3RFloat(out, in, width, height, pitch, scale, d_mean, s);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  cudaFree(d_mean);
  return (int)e;
}

}  // extern "C"
