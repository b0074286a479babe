/*
 * fbtool's own ABI-compatible subset of DeepStream's nvdsinfer.h + nvdsinfer_custom_impl.h.
 *
 * Written from the documented layouts (docs: /work/shared/REFERENCE.md section 5), not copied: it
 * lets the parser build and be tested where DeepStream is not installed. When the real headers
 * exist, the build uses them instead (FBTOOL_USE_DEEPSTREAM_HEADERS) and this file is not included.
 *
 * The object layout changed in DeepStream 9.0 (a trailing float rotation_angle: 24 -> 28 bytes).
 * FBTOOL_DS_MAJOR (8 or 9, default 9) selects it; the static_asserts below pin every size and
 * offset, so a layout mistake is a compile error, not a corrupted object list at runtime.
 */
#ifndef FBTOOL_NVDSINFER_H
#define FBTOOL_NVDSINFER_H

#include <cstddef>
#include <vector>

#ifndef FBTOOL_DS_MAJOR
#define FBTOOL_DS_MAJOR 9
#endif
#if FBTOOL_DS_MAJOR != 8 && FBTOOL_DS_MAJOR != 9
#error "FBTOOL_DS_MAJOR must be 8 (DeepStream 8.0 layout) or 9 (DeepStream 9.x layout)"
#endif

#define NVDSINFER_MAX_DIMS 8

typedef struct {
  unsigned int numDims;
  unsigned int d[NVDSINFER_MAX_DIMS];
  unsigned int numElements;
} NvDsInferDims;

typedef enum {
  FLOAT = 0,
  HALF = 1,
  INT8 = 2,
  INT32 = 3,
  INT64 = 4,
  UINT8 = 5
} NvDsInferDataType;

typedef struct {
  NvDsInferDataType dataType;
  union {
    NvDsInferDims inferDims;
    NvDsInferDims dims;  // deprecated alias kept by DeepStream
  };
  int bindingIndex;
  const char* layerName;
  void* buffer;
  int isInput;
} NvDsInferLayerInfo;

typedef struct {
  unsigned int width;
  unsigned int height;
  unsigned int channels;
} NvDsInferNetworkInfo;

typedef struct {
  unsigned int classId;
  float left;
  float top;
  float width;
  float height;
  float detectionConfidence;
#if FBTOOL_DS_MAJOR >= 9
  float rotation_angle;
#endif
} NvDsInferObjectDetectionInfo;

typedef struct {
  unsigned int classId;
  float left;
  float top;
  float width;
  float height;
  float detectionConfidence;
  float* mask;  // new float[mask_width * mask_height], freed by nvinfer with delete[]
  unsigned int mask_width;
  unsigned int mask_height;
  unsigned int mask_size;  // bytes
} NvDsInferInstanceMaskInfo;

typedef struct {
  unsigned int numClassesConfigured;
  std::vector<float> perClassPreclusterThreshold;
  std::vector<float> perClassPostclusterThreshold;
  std::vector<float>& perClassThreshold = perClassPreclusterThreshold;  // deprecated alias
} NvDsInferParseDetectionParams;

typedef bool (*NvDsInferParseCustomFunc)(std::vector<NvDsInferLayerInfo> const& outputLayersInfo,
                                         NvDsInferNetworkInfo const& networkInfo,
                                         NvDsInferParseDetectionParams const& detectionParams,
                                         std::vector<NvDsInferObjectDetectionInfo>& objectList);

typedef bool (*NvDsInferInstanceMaskParseCustomFunc)(std::vector<NvDsInferLayerInfo> const& outputLayersInfo,
                                                     NvDsInferNetworkInfo const& networkInfo,
                                                     NvDsInferParseDetectionParams const& detectionParams,
                                                     std::vector<NvDsInferInstanceMaskInfo>& objectList);

// Same contract as DeepStream's macros: compiles only when the function has the exact prototype.
#define CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE(customParseFunc)                                      \
  static void checkFunc_##customParseFunc(NvDsInferParseCustomFunc func = customParseFunc) {  \
    (void)func;                                                                               \
    checkFunc_##customParseFunc();                                                            \
  };                                                                                          \
  extern "C" bool customParseFunc(std::vector<NvDsInferLayerInfo> const& outputLayersInfo,    \
                                  NvDsInferNetworkInfo const& networkInfo,                    \
                                  NvDsInferParseDetectionParams const& detectionParams,       \
                                  std::vector<NvDsInferObjectDetectionInfo>& objectList);

#define CHECK_CUSTOM_INSTANCE_MASK_PARSE_FUNC_PROTOTYPE(customParseFunc)                                  \
  static void checkFunc_##customParseFunc(NvDsInferInstanceMaskParseCustomFunc func = customParseFunc) { \
    (void)func;                                                                                         \
    checkFunc_##customParseFunc();                                                                      \
  };                                                                                                    \
  extern "C" bool customParseFunc(std::vector<NvDsInferLayerInfo> const& outputLayersInfo,              \
                                  NvDsInferNetworkInfo const& networkInfo,                              \
                                  NvDsInferParseDetectionParams const& detectionParams,                 \
                                  std::vector<NvDsInferInstanceMaskInfo>& objectList);

// ---- Layout pins (x86_64 / aarch64 LP64, the platforms DeepStream ships for) ----
static_assert(sizeof(void*) == 8, "DeepStream targets LP64 only");
static_assert(sizeof(NvDsInferDims) == 40, "NvDsInferDims is 40 bytes");
static_assert(offsetof(NvDsInferDims, numElements) == 36, "NvDsInferDims.numElements at 36");
static_assert(sizeof(NvDsInferDataType) == 4, "NvDsInferDataType is int-sized");
static_assert(offsetof(NvDsInferLayerInfo, inferDims) == 4, "LayerInfo.inferDims at 4");
static_assert(offsetof(NvDsInferLayerInfo, bindingIndex) == 44, "LayerInfo.bindingIndex at 44");
static_assert(offsetof(NvDsInferLayerInfo, layerName) == 48, "LayerInfo.layerName at 48");
static_assert(offsetof(NvDsInferLayerInfo, buffer) == 56, "LayerInfo.buffer at 56");
static_assert(offsetof(NvDsInferLayerInfo, isInput) == 64, "LayerInfo.isInput at 64");
static_assert(sizeof(NvDsInferLayerInfo) == 72, "NvDsInferLayerInfo is 72 bytes");
static_assert(sizeof(NvDsInferNetworkInfo) == 12, "NvDsInferNetworkInfo is 12 bytes");
static_assert(offsetof(NvDsInferObjectDetectionInfo, detectionConfidence) == 20, "ObjectInfo.confidence at 20");
#if FBTOOL_DS_MAJOR >= 9
static_assert(offsetof(NvDsInferObjectDetectionInfo, rotation_angle) == 24, "ObjectInfo.rotation_angle at 24");
static_assert(sizeof(NvDsInferObjectDetectionInfo) == 28, "DeepStream 9.x NvDsInferObjectDetectionInfo is 28 bytes");
#else
static_assert(sizeof(NvDsInferObjectDetectionInfo) == 24, "DeepStream 8.0 NvDsInferObjectDetectionInfo is 24 bytes");
#endif
static_assert(offsetof(NvDsInferInstanceMaskInfo, mask) == 24, "MaskInfo.mask at 24");
static_assert(offsetof(NvDsInferInstanceMaskInfo, mask_width) == 32, "MaskInfo.mask_width at 32");
static_assert(offsetof(NvDsInferInstanceMaskInfo, mask_size) == 40, "MaskInfo.mask_size at 40");
static_assert(sizeof(NvDsInferInstanceMaskInfo) == 48, "NvDsInferInstanceMaskInfo is 48 bytes");
// Not standard-layout (std::vector, a reference member): pin the size only; members are in the
// documented order: unsigned (+4 padding), two 24-byte libstdc++ vectors, one reference.
static_assert(sizeof(NvDsInferParseDetectionParams) == 64, "NvDsInferParseDetectionParams is 64 bytes");

#endif  // FBTOOL_NVDSINFER_H
