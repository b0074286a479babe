/*
 * Test harness: drives a compiled nvinfer custom parser the way nvinfer does, for Python (ctypes).
 *
 * nvinfer dlopens custom-lib-path, dlsyms the configured function name and calls it with C++
 * objects (std::vector<NvDsInferLayerInfo>, NvDsInferNetworkInfo, NvDsInferParseDetectionParams).
 * ctypes cannot build those, so this small library, compiled by the same g++ with the same ABI
 * header as the parser, builds them from plain arrays, makes the call, copies the objects out into
 * plain structs and frees each instance mask with delete[] (as nvinfer does once it is done).
 */
#include <dlfcn.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <vector>

#ifdef FBTOOL_USE_DEEPSTREAM_HEADERS
#include "nvdsinfer_custom_impl.h"
#else
#include "fbtool_nvdsinfer.h"
#endif

#define HARNESS_API extern "C" __attribute__((visibility("default")))

extern "C" {
struct FbtLayer {  // one output layer, as plain data
  const char* name;
  int data_type;
  unsigned num_dims;
  unsigned dims[NVDSINFER_MAX_DIMS];
  unsigned num_elements;
  const void* buffer;
  int is_input;
  int binding_index;
};

struct FbtObject {  // one parsed object, as plain data
  unsigned class_id;
  float left, top, width, height, confidence;
  float rotation_angle;  // 0 unless the build has the DeepStream 9.x layout and the parser set it
  unsigned mask_width, mask_height, mask_size;
  int has_mask;
};
}

namespace {

struct Result {
  std::vector<FbtObject> objects;
  std::vector<std::vector<float>> masks;
};

template <typename T>
float rotation_of(const T& o, long) {  // DeepStream 8.0 layout: no such field
  (void)o;
  return 0.0f;
}
template <typename T>
auto rotation_of(const T& o, int) -> decltype(o.rotation_angle) {
  return o.rotation_angle;
}

void set_error(char* err, int len, const char* msg) {
  if (err != nullptr && len > 0) std::snprintf(err, static_cast<size_t>(len), "%s", msg);
}

}  // namespace

// Open a parser library as nvinfer does (nvdsinfer_context_impl.cpp: DlLibHandle(customLibPath,
// RTLD_LAZY), dlopen(path, mode) in nvdsinfer_func_utils.cpp). Returns the dlopen handle or null.
HARNESS_API void* fbt_open(const char* path, char* err, int err_len) {
  void* h = dlopen(path, RTLD_LAZY);
  if (h == nullptr) set_error(err, err_len, dlerror());
  return h;
}

HARNESS_API int fbt_close(void* handle) { return handle != nullptr ? dlclose(handle) : 0; }

HARNESS_API int fbt_has_symbol(void* handle, const char* func) {
  return handle != nullptr && dlsym(handle, func) != nullptr;
}

// Sizes and offsets as compiled: [sizeof ObjectInfo, sizeof MaskInfo, sizeof LayerInfo,
// offsetof LayerInfo.buffer, offsetof MaskInfo.mask, sizeof NetworkInfo, sizeof DetectionParams,
// sizeof Dims]. Tests compare them with the documented DeepStream layouts.
HARNESS_API int fbt_abi(unsigned* out, int n) {
  const unsigned v[] = {
      static_cast<unsigned>(sizeof(NvDsInferObjectDetectionInfo)),
      static_cast<unsigned>(sizeof(NvDsInferInstanceMaskInfo)),
      static_cast<unsigned>(sizeof(NvDsInferLayerInfo)),
      static_cast<unsigned>(offsetof(NvDsInferLayerInfo, buffer)),
      static_cast<unsigned>(offsetof(NvDsInferInstanceMaskInfo, mask)),
      static_cast<unsigned>(sizeof(NvDsInferNetworkInfo)),
      static_cast<unsigned>(sizeof(NvDsInferParseDetectionParams)),
      static_cast<unsigned>(sizeof(NvDsInferDims)),
  };
  const int count = static_cast<int>(sizeof(v) / sizeof(v[0]));
  for (int i = 0; i < n && i < count; ++i) out[i] = v[i];
  return count;
}

// Call `func` (kind 0: bbox parser, 1: instance-mask parser). Returns 1 when the parser returned
// true (*result is set), 0 when it returned false, -1 when the symbol is missing, -2 when it threw,
// -3 when it handed back an inconsistent mask (wrong mask_size, null mask with a size).
HARNESS_API int fbt_parse(void* handle, const char* func, int kind, const FbtLayer* layers, int n_layers,
                          unsigned net_w, unsigned net_h, unsigned net_c, const float* thresholds, int n_thr,
                          void** result, char* err, int err_len) {
  *result = nullptr;
  void* sym = handle != nullptr ? dlsym(handle, func) : nullptr;
  if (sym == nullptr) {
    set_error(err, err_len, "symbol not found in the parser library");
    return -1;
  }
  std::vector<NvDsInferLayerInfo> infos;
  for (int i = 0; i < n_layers; ++i) {
    NvDsInferLayerInfo li{};
    li.dataType = static_cast<NvDsInferDataType>(layers[i].data_type);
    li.inferDims.numDims = layers[i].num_dims;
    for (int k = 0; k < NVDSINFER_MAX_DIMS; ++k) li.inferDims.d[k] = layers[i].dims[k];
    li.inferDims.numElements = layers[i].num_elements;
    li.bindingIndex = layers[i].binding_index;
    li.layerName = layers[i].name;
    li.buffer = const_cast<void*>(layers[i].buffer);
    li.isInput = layers[i].is_input;
    infos.push_back(li);
  }
  NvDsInferNetworkInfo net{net_w, net_h, net_c};
  NvDsInferParseDetectionParams params;
  params.numClassesConfigured = static_cast<unsigned>(n_thr);
  params.perClassPreclusterThreshold.assign(thresholds, thresholds + n_thr);
  params.perClassPostclusterThreshold.assign(thresholds, thresholds + n_thr);

  Result* res = new Result();
  int rc = 0;
  try {
    if (kind == 0) {
      std::vector<NvDsInferObjectDetectionInfo> objs;
      bool ok = reinterpret_cast<NvDsInferParseCustomFunc>(sym)(infos, net, params, objs);
      for (const auto& o : objs) {
        FbtObject f{};
        f.class_id = o.classId;
        f.left = o.left, f.top = o.top, f.width = o.width, f.height = o.height;
        f.confidence = o.detectionConfidence;
        f.rotation_angle = rotation_of(o, 0);
        res->objects.push_back(f);
        res->masks.emplace_back();
      }
      rc = ok ? 1 : 0;
    } else {
      std::vector<NvDsInferInstanceMaskInfo> objs;
      bool ok = reinterpret_cast<NvDsInferInstanceMaskParseCustomFunc>(sym)(infos, net, params, objs);
      rc = ok ? 1 : 0;
      for (auto& o : objs) {
        FbtObject f{};
        f.class_id = o.classId;
        f.left = o.left, f.top = o.top, f.width = o.width, f.height = o.height;
        f.confidence = o.detectionConfidence;
        f.mask_width = o.mask_width, f.mask_height = o.mask_height, f.mask_size = o.mask_size;
        f.has_mask = o.mask != nullptr;
        const size_t n = static_cast<size_t>(o.mask_width) * o.mask_height;
        std::vector<float> m;
        if (o.mask != nullptr && o.mask_size == n * sizeof(float)) {
          m.assign(o.mask, o.mask + n);
        } else if (o.mask != nullptr || o.mask_size != 0) {
          rc = -3;
        }
        delete[] o.mask;  // what nvinfer does with the parser's new[]'d buffer
        o.mask = nullptr;
        res->objects.push_back(f);
        res->masks.push_back(std::move(m));
      }
    }
  } catch (const std::exception& e) {
    set_error(err, err_len, e.what());
    delete res;
    return -2;
  } catch (...) {
    set_error(err, err_len, "the parser threw a non-standard exception");
    delete res;
    return -2;
  }
  if (rc == -3) set_error(err, err_len, "mask_size does not match mask_width * mask_height floats");
  *result = res;
  return rc;
}

HARNESS_API int fbt_result_count(void* result) {
  return result != nullptr ? static_cast<int>(static_cast<Result*>(result)->objects.size()) : 0;
}

HARNESS_API void fbt_result_objects(void* result, FbtObject* out) {
  const Result* r = static_cast<Result*>(result);
  if (r != nullptr && !r->objects.empty()) std::memcpy(out, r->objects.data(), r->objects.size() * sizeof(FbtObject));
}

// Copy mask i (mask_width * mask_height floats) into out. Returns the number of floats copied.
HARNESS_API int fbt_result_mask(void* result, int i, float* out, int capacity) {
  const Result* r = static_cast<Result*>(result);
  if (r == nullptr || i < 0 || static_cast<size_t>(i) >= r->masks.size()) return 0;
  const auto& m = r->masks[static_cast<size_t>(i)];
  const int n = static_cast<int>(m.size()) < capacity ? static_cast<int>(m.size()) : capacity;
  if (n > 0) std::memcpy(out, m.data(), static_cast<size_t>(n) * sizeof(float));
  return n;
}

HARNESS_API void fbt_result_free(void* result) { delete static_cast<Result*>(result); }
