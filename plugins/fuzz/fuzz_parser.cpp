/*
 * libFuzzer target for both parser entry points (build: plugins/fuzz/run_fuzz.sh).
 *
 * The input bytes are decoded into what nvinfer could hand the parser: a network size, a
 * threshold vector and 0-4 output layers with chosen names, dtypes, ranks, dims, element counts,
 * null buffers and contents. Half of the shapes are "plausible" (the right anchor count for the
 * network size), so the decode and mask code is reached, not only the validation.
 * Buffers are allocated at exactly the size their dims promise (that is nvinfer's contract), so
 * AddressSanitizer flags any read the dims do not cover. Returned objects are checked for the
 * invariants nvinfer relies on; a violation traps.
 */
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../src/nvdsparse_fbtool.cpp"  // one TU: the fuzzer sees anchor_count() for plausible shapes

namespace {

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t u8() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  float f32() {
    uint32_t b = static_cast<uint32_t>(u8()) | (static_cast<uint32_t>(u8()) << 8) |
                 (static_cast<uint32_t>(u8()) << 16) | (static_cast<uint32_t>(u8()) << 24);
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  }
};

size_t elem_size(int dtype) {
  switch (dtype) {
    case HALF: return 2;
    case INT8: case UINT8: return 1;
    case INT64: return 8;
    default: return 4;
  }
}

const char* kNames[] = {kBoxesLayer, kScoresLayer, kLandmarksLayer, kDecodedBoxesLayer,
                        kDecodedScoresLayer, kDecodedLandmarksLayer, nullptr, "junk"};

// Columns the parser expects for a layer name (0 = unknown name).
unsigned expected_cols(const char* name) {
  if (name == nullptr) return 0;
  if (!std::strcmp(name, kBoxesLayer) || !std::strcmp(name, kDecodedBoxesLayer)) return 4;
  if (!std::strcmp(name, kScoresLayer)) return 2;
  if (!std::strcmp(name, kDecodedScoresLayer)) return 1;
  if ((kLandmarksLayer && !std::strcmp(name, kLandmarksLayer)) ||
      (kDecodedLandmarksLayer && !std::strcmp(name, kDecodedLandmarksLayer)))
    return 2 * kNumLandmarks;
  return 3;
}

void store(std::vector<uint8_t>& buf, size_t i, int dtype, float v) {
  const size_t es = elem_size(dtype);
  if (dtype == HALF) {  // crude fp32 -> fp16 (truncating); any bit pattern is a valid input anyway
    uint32_t b;
    std::memcpy(&b, &v, 4);
    const uint32_t sign = (b >> 16) & 0x8000u;
    const int exp = static_cast<int>((b >> 23) & 0xff) - 127 + 15;
    uint16_t h = static_cast<uint16_t>(sign);
    if (exp >= 31) h |= 0x7c00u | (((b >> 23) & 0xff) == 0xff && (b & 0x7fffff) ? 0x200u : 0u);
    else if (exp > 0) h |= static_cast<uint16_t>((exp << 10) | ((b >> 13) & 0x3ffu));
    std::memcpy(&buf[i * es], &h, 2);
  } else if (es == 4) {
    std::memcpy(&buf[i * es], &v, 4);
  } else {
    std::memcpy(&buf[i * es], &v, 1);  // int8/int64 layers are rejected anyway: any byte will do
  }
}

void check(bool ok) {
  if (!ok) __builtin_trap();
}

template <typename T>
void check_objects(const std::vector<T>& objs, const NvDsInferNetworkInfo& net) {
  for (const T& o : objs) {
    check(o.classId == 0);
    check(std::isfinite(o.left) && std::isfinite(o.top) && std::isfinite(o.width) && std::isfinite(o.height));
    check(o.left >= 0 && o.top >= 0 && o.width > 0 && o.height > 0);
    check(o.left + o.width <= net.width * 1.0001f + 1e-3f && o.top + o.height <= net.height * 1.0001f + 1e-3f);
    check(std::isfinite(o.detectionConfidence));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  NvDsInferNetworkInfo net{0, 0, 3};
  // Mostly small inputs: the same code paths at thousands of executions/s. The recipe's size (the
  // only one with more candidates than the pre-NMS top-k) costs ~25 ms under ASan: kept rare.
  const uint8_t size_mode = in.u8();
  switch (size_mode == 255 ? 3 : size_mode % 32 == 3 ? 5 : size_mode % 32) {
    case 0: case 1: case 2: net.width = in.u16() % 300; net.height = in.u16() % 300; break;  // 0 included
    case 3: net.width = kDefaultWidth; net.height = kDefaultHeight; break;                 // the recipe's size
    case 4: net.width = 9000; net.height = 16; break;                                      // beyond the guard
    default: net.width = 8u * (1 + in.u8() % 12); net.height = 8u * (1 + in.u8() % 12); break;
  }
  NvDsInferParseDetectionParams params;
  switch (in.u8() % 4) {
    case 0: break;  // empty: the recipe default applies
    case 1: params.perClassPreclusterThreshold = {in.f32()}; break;
    default: params.perClassPreclusterThreshold = {static_cast<float>(in.u8()) / 256.0f}; break;
  }
  params.numClassesConfigured = static_cast<unsigned>(params.perClassPreclusterThreshold.size());

  const uint64_t anchors = (net.width && net.height && net.width <= 8192 && net.height <= 8192)
                               ? anchor_count(net.width, net.height) : 7;
  const unsigned n_layers = in.u8() % 5;
  std::vector<std::vector<uint8_t>> buffers(n_layers);
  std::vector<NvDsInferLayerInfo> layers;
  for (unsigned li = 0; li < n_layers; ++li) {
    NvDsInferLayerInfo l{};
    const char* name = kNames[in.u8() % 8];
    l.layerName = name;
    const uint8_t dt = in.u8() % 10;
    // 6 and 7: no enumerator (an unknown type) yet inside the enum's value range, so no UB to load.
    l.dataType = static_cast<NvDsInferDataType>(dt <= 7 ? dt : (dt == 8 ? HALF : FLOAT));
    const uint8_t shape = in.u8() % 6;
    const bool decoded = name && (!std::strcmp(name, kDecodedBoxesLayer) || !std::strcmp(name, kDecodedScoresLayer) ||
                                  (kDecodedLandmarksLayer && !std::strcmp(name, kDecodedLandmarksLayer)));
    if (shape <= 2) {  // plausible
      l.inferDims.numDims = 2;
      l.inferDims.d[0] = static_cast<unsigned>(decoded ? in.u8() % 16 : anchors);
      l.inferDims.d[1] = expected_cols(name);
      if (decoded && name && !std::strcmp(name, kDecodedScoresLayer) && (in.u8() & 1)) l.inferDims.numDims = 1;
    } else {
      l.inferDims.numDims = in.u8() % 10;
      for (unsigned k = 0; k < NVDSINFER_MAX_DIMS; ++k) l.inferDims.d[k] = in.u8() % (k < 2 ? 64 : 4);
    }
    uint64_t count = 1;
    const unsigned rank = std::min<unsigned>(l.inferDims.numDims, NVDSINFER_MAX_DIMS);
    for (unsigned k = 0; k < rank; ++k) count *= l.inferDims.d[k];
    if (count > (1u << 20)) return 0;  // keep executions fast
    l.inferDims.numElements = static_cast<unsigned>(count);
    if (shape == 5) l.inferDims.numElements += in.u8() % 3;  // inconsistent count
    l.bindingIndex = static_cast<int>(li + 1);
    l.isInput = (in.u8() % 32) == 0;
    const bool null_buffer = (in.u8() % 16) == 0;
    const size_t es = elem_size(l.dataType);
    std::vector<uint8_t>& buf = buffers[li];
    buf.assign(static_cast<size_t>(count) * es, 0);  // exactly what the dims promise
    const uint8_t fill = in.u8() % 4;
    const float constant = in.f32();
    for (size_t i = 0; i < count; ++i) {
      float v;
      if (fill == 0) v = in.f32();                                      // raw bits: NaN, Inf, huge
      else if (fill == 1) v = constant;                                 // every row alike
      else v = static_cast<float>(in.n ? in.u8() : i % 251) / 128.0f;  // tame values: faces found
      store(buf, i, l.dataType, v);
    }
    l.buffer = null_buffer || buf.empty() ? nullptr : buf.data();
    layers.push_back(l);
  }

  std::vector<NvDsInferObjectDetectionInfo> boxes;
  if (NvDsInferParseFbtoolFace(layers, net, params, boxes)) check_objects(boxes, net);
  else check(boxes.empty());

  std::vector<NvDsInferInstanceMaskInfo> masks;
  const bool ok = NvDsInferParseFbtoolFaceMask(layers, net, params, masks);
  if (ok) check_objects(masks, net);
  else check(masks.empty());
  for (auto& m : masks) {
    check(m.mask != nullptr && m.mask_width == kMaskResolution && m.mask_height == kMaskResolution);
    check(m.mask_size == sizeof(float) * kMaskResolution * kMaskResolution);
    for (unsigned i = 0; i < kMaskResolution * kMaskResolution; ++i) check(m.mask[i] >= 0.0f && m.mask[i] <= 1.0f);
    delete[] m.mask;
  }
  return 0;
}
