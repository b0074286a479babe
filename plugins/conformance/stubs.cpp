// Stand-ins for the CLOSED DeepStream/CUDA libraries that NVIDIA's open nvinfer/nvdsinfer code
// calls on the paths the conformance tests drive. Each one is listed, with why, in
// docs/deepstream.md ("Conformance against NVIDIA's source"). Everything else NVIDIA's objects
// reference stays undefined: the harness is loaded with lazy binding, so a call to an unlisted
// closed function crashes instead of being silently emulated.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include <glib.h>

#include "NvInfer.h"
#include "cuda_runtime_api.h"
#include "nvdsinfer_logger.h"
#include "nvdsinfer_conversion.h"
#include "nvdsinfer_tlt.h"
#include "nvdsmeta.h"

// libnvds_inferlogger: nvdsinfer's log sink. Printed on stderr so tests can read NVIDIA's own
// warnings (e.g. "INT8 calibration file not specified. Trying FP16 mode.").
void dsInferLogPrint__(NvDsInferLogLevel level, const char* fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nvdsinfer[%d]: ", (int)level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
std::unique_ptr<nvinfer1::ILogger> gTrtLogger;

// libcudart: the property parser asks for the device count when it reads gpu-id; one GPU.
extern "C" cudaError_t cudaGetDeviceCount(int* count)
{
    *count = 1;
    return cudaSuccess;
}

// libnvds_meta: the object-meta pool and lists (attach_metadata_detector). Plain allocations,
// objects appended to the frame's list in call order (the real pool does the same through
// nvds_add_obj_meta_to_frame).
extern "C" NvDsObjectMeta* nvds_acquire_obj_meta_from_pool(NvDsBatchMeta*)
{
    return static_cast<NvDsObjectMeta*>(g_malloc0(sizeof(NvDsObjectMeta)));
}
extern "C" void nvds_add_obj_meta_to_frame(NvDsFrameMeta* frame, NvDsObjectMeta* obj, NvDsObjectMeta* parent)
{
    obj->parent = parent;
    frame->obj_meta_list = g_list_append(frame->obj_meta_list, obj);
    frame->num_obj_meta++;
}
// ... and the user-meta pool (attach_tensor_output_meta): plain allocations, appended in call order.
extern "C" NvDsUserMeta* nvds_acquire_user_meta_from_pool(NvDsBatchMeta*)
{
    return static_cast<NvDsUserMeta*>(g_malloc0(sizeof(NvDsUserMeta)));
}
extern "C" void nvds_add_user_meta_to_obj(NvDsObjectMeta* obj, NvDsUserMeta* meta)
{
    obj->obj_user_meta_list = g_list_append(obj->obj_user_meta_list, meta);
}
extern "C" void nvds_acquire_meta_lock(NvDsBatchMeta*) {}
extern "C" void nvds_release_meta_lock(NvDsBatchMeta*) {}

// nvdsinfer_conversion.cu (CUDA kernels, not compiled: no nvcc/GPU here) and libnvds_infer_utils
// (closed): their addresses are taken by nvdsinfer_context_impl.cpp, so they must exist; nothing the
// tests drive calls them, and a call would abort loudly.
[[noreturn]] static void not_here(const char* what)
{
    fprintf(stderr, "conformance: %s is not available here (GPU code)\n", what);
    abort();
}
#define FBTOOL_CONV_STUB(name, T)                                                              \
    void name(float*, T*, unsigned int, unsigned int, unsigned int, float, float*, cudaStream_t) \
    {                                                                                           \
        not_here(#name);                                                                        \
    }
FBTOOL_CONV_STUB(NvDsInferConvert_C3ToP3Float, unsigned char)
FBTOOL_CONV_STUB(NvDsInferConvert_C3ToL3Float, unsigned char)
FBTOOL_CONV_STUB(NvDsInferConvert_C4ToP3Float, unsigned char)
FBTOOL_CONV_STUB(NvDsInferConvert_C4ToL3Float, unsigned char)
FBTOOL_CONV_STUB(NvDsInferConvert_C3ToP3RFloat, unsigned char)
FBTOOL_CONV_STUB(NvDsInferConvert_C3ToL3RFloat, unsigned char)
FBTOOL_CONV_STUB(NvDsInferConvert_C4ToP3RFloat, unsigned char)
FBTOOL_CONV_STUB(NvDsInferConvert_C4ToL3RFloat, unsigned char)
FBTOOL_CONV_STUB(NvDsInferConvert_C1ToP1Float, unsigned char)
FBTOOL_CONV_STUB(NvDsInferConvert_FtFTensor, float)
bool NvDsInferCudaEngineGetFromTltModel(nvinfer1::IBuilder* const, nvinfer1::IBuilderConfig* const,
                                        const NvDsInferContextInitParams* const, nvinfer1::DataType,
                                        nvinfer1::ICudaEngine*&)
{
    not_here("NvDsInferCudaEngineGetFromTltModel");
}
