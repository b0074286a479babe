// fbtool's NVDEC decoder session: NVIDIA's Video Codec API through FFmpeg's nv-codec-headers (MIT;
// libcuda and libnvcuvid are dlopen'ed at run time, so this library links against neither).
// The C ABI and why it exists: fbtool_nvdec.h. Shape of a session, as NVIDIA's NvDecoder sample:
//   packet -> cuvidParseVideoData -> sequence callback (creates the decoder once: min_num_decode_surfaces)
//          -> decode callback (cuvidDecodePicture) -> display callback (map, copy into a pool slot, unmap).
// Everything runs on the device's primary context, the one PyTorch uses, so pool slots are torch memory.

#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

// The loader prints its failures (a missing libnvcuvid, a missing symbol) with this; keep the first one
// so the caller can say what is missing instead of a bare -1.
static thread_local char g_load_msg[256];
static void fbtool_nvdec_log(const char *fmt, ...) {
    if (g_load_msg[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_load_msg, sizeof g_load_msg, fmt, ap);
    va_end(ap);
    size_t n = strlen(g_load_msg);
    if (n && g_load_msg[n - 1] == '\n') g_load_msg[n - 1] = 0;
}
#define FFNV_LOG_FUNC(logctx, msg, ...) fbtool_nvdec_log((msg), __VA_ARGS__)
#define FFNV_DEBUG_LOG_FUNC(logctx, msg, ...)
#include <ffnvcodec/dynlink_loader.h>

#include "fbtool_nvdec.h"

#define EXPORT extern "C" __attribute__((visibility("default")))

static_assert(sizeof(CUdeviceptr) == 8, "64-bit device pointers (cuvidMapVideoFrame64) expected");
static_assert(sizeof(FbtoolNvdecFrame) == 16, "FbtoolNvdecFrame layout is part of the ABI");

namespace {

CudaFunctions *cu = nullptr;
CuvidFunctions *cuvid = nullptr;
std::mutex load_mu;
std::string load_err;

// Loads both libraries once per process; "" when they are there.
std::string load() {
    std::lock_guard<std::mutex> g(load_mu);
    if (cu && cuvid) return "";
    if (!load_err.empty()) return load_err;
    g_load_msg[0] = 0;
    if (cuda_load_functions(&cu, nullptr) != 0) {
        load_err = std::string("libcuda.so.1: ") + (g_load_msg[0] ? g_load_msg : "cannot load");
    } else if (cuvid_load_functions(&cuvid, nullptr) != 0) {
        load_err = std::string("libnvcuvid.so.1 (NVDEC, part of the NVIDIA driver): ") +
                   (g_load_msg[0] ? g_load_msg : "cannot load");
    } else if (cu->cuInit(0) != CUDA_SUCCESS) {
        load_err = "cuInit failed (no NVIDIA GPU or driver)";
    }
    return load_err;
}

std::string cu_err(CUresult r, const char *what) {
    const char *name = nullptr;
    if (cu && cu->cuGetErrorName) cu->cuGetErrorName(r, &name);
    return std::string(what) + " failed: " + (name ? name : "CUresult " + std::to_string((int)r));
}

void put_err(char *err, int32_t errlen, const std::string &msg) {
    if (err && errlen > 0) snprintf(err, (size_t)errlen, "%s", msg.c_str());
}

// The context is pushed around every entry point: the caller's thread (a Python decoding thread) may
// have none current, or another.
struct CtxScope {
    bool ok;
    explicit CtxScope(CUcontext c) : ok(cu->cuCtxPushCurrent(c) == CUDA_SUCCESS) {}
    ~CtxScope() {
        CUcontext dummy;
        if (ok) cu->cuCtxPopCurrent(&dummy);
    }
};

}  // namespace

struct FbtoolNvdecPool {
    CUdevice dev = 0;
    CUcontext ctx = nullptr;
    CUdeviceptr base = 0;
    int64_t slot_bytes = 0;
    int32_t width = 0, height = 0, slots = 0;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int32_t> free_slots;
    struct Pending {
        CUevent ev;
        std::vector<int32_t> slots;
    };
    std::deque<Pending> pending;  // in release order: a stream's events complete in that order
    std::vector<CUevent> spare_events;
    bool halted = false;

    // under mu: moves the slots of completed releases to the free list
    void reap() {
        while (!pending.empty() && cu->cuEventQuery(pending.front().ev) == CUDA_SUCCESS) {
            for (int32_t s : pending.front().slots) free_slots.push_back(s);
            spare_events.push_back(pending.front().ev);
            pending.pop_front();
        }
    }

    // A free slot (-1: halted). Waits with the GIL released: on the oldest pending release's event
    // (blocking sync, no spinning core), else for a release call.
    int32_t acquire(int64_t *waits, double *wait_s) {
        std::unique_lock<std::mutex> lk(mu);
        bool waited = false;
        auto t0 = std::chrono::steady_clock::now();
        for (;;) {
            reap();
            if (!free_slots.empty()) {
                int32_t s = free_slots.back();
                free_slots.pop_back();
                if (waited) {
                    ++*waits;
                    *wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                }
                return s;
            }
            if (halted) return -1;
            waited = true;
            if (!pending.empty()) {
                // The event may be reaped and recorded again by another thread meanwhile: then this
                // waits for a later point of a stream, which is only longer, never wrong.
                CUevent ev = pending.front().ev;
                lk.unlock();
                cu->cuEventSynchronize(ev);
                lk.lock();
            } else {
                cv.wait_for(lk, std::chrono::milliseconds(20));
            }
        }
    }
};

struct FbtoolNvdecSession {
    FbtoolNvdecPool *pool = nullptr;
    CUstream stream = nullptr;
    CUvideoctxlock lock = nullptr;
    CUvideoparser parser = nullptr;
    CUvideodecoder dec = nullptr;
    int32_t extra = 0;
    FbtoolNvdecStats st{};
    CUVIDEOFORMAT fmt{};
    std::deque<FbtoolNvdecFrame> ready;  // written into the pool, not yet handed out
    std::string err;
    bool stopped = false;

    int fail(const std::string &msg) {
        if (err.empty()) err = msg;
        return 0;  // a callback's failure: cuvidParseVideoData returns an error
    }

    int on_sequence(CUVIDEOFORMAT *f) {
        int want = f->min_num_decode_surfaces + extra;
        if (dec) {
            // The same stream again (a repeated SPS): keep the decoder. A new size or codec would need
            // cuvidReconfigureDecoder and another pool; fbtool's graphs are per frame size anyway.
            if (f->coded_width == fmt.coded_width && f->coded_height == fmt.coded_height &&
                f->codec == fmt.codec && f->chroma_format == fmt.chroma_format &&
                f->bit_depth_luma_minus8 == fmt.bit_depth_luma_minus8)
                return st.decode_surfaces;
            return fail("the stream changes its format midway (size, codec or bit depth): not supported");
        }
        if (f->chroma_format != cudaVideoChromaFormat_420 || f->bit_depth_luma_minus8 != 0)
            return fail("only 8-bit 4:2:0 video is decoded to NV12 here (chroma format " +
                        std::to_string((int)f->chroma_format) + ", bit depth " +
                        std::to_string(8 + f->bit_depth_luma_minus8) + ")");
        int w = f->display_area.right - f->display_area.left, h = f->display_area.bottom - f->display_area.top;
        if (w != pool->width || h != pool->height)
            return fail("frame size " + std::to_string(w) + "x" + std::to_string(h) + " differs from the pool's " +
                        std::to_string(pool->width) + "x" + std::to_string(pool->height));
        if (cuvid->cuvidGetDecoderCaps) {
            CUVIDDECODECAPS caps{};
            caps.eCodecType = f->codec;
            caps.eChromaFormat = f->chroma_format;
            caps.nBitDepthMinus8 = f->bit_depth_luma_minus8;
            CUresult r = cuvid->cuvidGetDecoderCaps(&caps);
            if (r != CUDA_SUCCESS) return fail(cu_err(r, "cuvidGetDecoderCaps"));
            if (!caps.bIsSupported) return fail("this GPU's NVDEC does not decode codec " + std::to_string((int)f->codec));
            if (f->coded_width > caps.nMaxWidth || f->coded_height > caps.nMaxHeight)
                return fail("frame too large for this GPU's NVDEC");
        }
        CUVIDDECODECREATEINFO ci{};
        ci.CodecType = f->codec;
        ci.ChromaFormat = f->chroma_format;
        ci.OutputFormat = cudaVideoSurfaceFormat_NV12;
        ci.bitDepthMinus8 = f->bit_depth_luma_minus8;
        ci.DeinterlaceMode = f->progressive_sequence ? cudaVideoDeinterlaceMode_Weave : cudaVideoDeinterlaceMode_Adaptive;
        ci.ulWidth = ci.ulMaxWidth = ci.ulTargetWidth = f->coded_width;
        ci.ulHeight = ci.ulMaxHeight = ci.ulTargetHeight = f->coded_height;
        // No display_area / target scaling: the output surface is the coded frame as NVDEC wrote it, the
        // display area is cut out by the copy (as NVIDIA's NvDecoder, and so PyNvVideoCodec, do).
        ci.ulNumDecodeSurfaces = (tcu_ulong)want;
        // One output surface: each frame is mapped, copied and unmapped before the next is mapped.
        ci.ulNumOutputSurfaces = 1;
        ci.ulCreationFlags = cudaVideoCreate_PreferCUVID;
        ci.vidLock = lock;
        CUresult r = cuvid->cuvidCreateDecoder(&dec, &ci);
        if (r != CUDA_SUCCESS) return fail(cu_err(r, "cuvidCreateDecoder"));
        fmt = *f;
        st.codec = (int32_t)f->codec;
        st.width = w;
        st.height = h;
        st.coded_width = (int32_t)f->coded_width;
        st.coded_height = (int32_t)f->coded_height;
        st.min_decode_surfaces = f->min_num_decode_surfaces;
        st.decode_surfaces = want;
        st.output_surfaces = 1;
        return want;  // > 1: the parser cycles through exactly these surfaces
    }

    int on_decode(CUVIDPICPARAMS *p) {
        if (!dec) return fail("a picture before any sequence header");
        CUresult r = cuvid->cuvidDecodePicture(dec, p);
        return r == CUDA_SUCCESS ? 1 : fail(cu_err(r, "cuvidDecodePicture"));
    }

    int on_display(CUVIDPARSERDISPINFO *d) {
        if (!d) return 1;  // end of stream
        CUVIDPROCPARAMS pp{};
        pp.progressive_frame = d->progressive_frame;
        pp.second_field = d->repeat_first_field + 1;
        pp.top_field_first = d->top_field_first;
        pp.unpaired_field = d->repeat_first_field < 0;
        pp.output_stream = stream;
        int32_t flags = 0;
        CUVIDGETDECODESTATUS ds{};
        if (cuvid->cuvidGetDecodeStatus(dec, d->picture_index, &ds) == CUDA_SUCCESS &&
            (ds.decodeStatus == cuvidDecodeStatus_Error || ds.decodeStatus == cuvidDecodeStatus_Error_Concealed)) {
            flags = 1;
            ++st.decode_errors;
        }
        CUdeviceptr src = 0;
        unsigned int pitch = 0;
        CUresult r = cuvid->cuvidMapVideoFrame(dec, d->picture_index, &src, &pitch, &pp);
        if (r != CUDA_SUCCESS) return fail(cu_err(r, "cuvidMapVideoFrame"));
        int32_t slot = pool->acquire(&st.slot_waits, &st.slot_wait_s);
        if (slot < 0) {
            cuvid->cuvidUnmapVideoFrame(dec, src);
            stopped = true;
            return fail("stopped");
        }
        const int w = st.width, h = st.height;
        const size_t left = (size_t)fmt.display_area.left, top = (size_t)fmt.display_area.top;
        CUdeviceptr dst = pool->base + (CUdeviceptr)slot * (CUdeviceptr)pool->slot_bytes;
        CUDA_MEMCPY2D m{};
        m.srcMemoryType = m.dstMemoryType = CU_MEMORYTYPE_DEVICE;
        m.srcDevice = src + top * pitch + left;
        m.srcPitch = pitch;
        m.dstDevice = dst;
        m.dstPitch = (size_t)w;
        m.WidthInBytes = (size_t)w;
        m.Height = (size_t)h;
        r = cu->cuMemcpy2DAsync(&m, stream);
        if (r == CUDA_SUCCESS) {
            // UV follows the luma plane of the whole output surface (coded height, even)
            m.srcDevice = src + (size_t)((fmt.coded_height + 1) & ~1u) * pitch + (top / 2) * pitch + left;
            m.dstDevice = dst + (CUdeviceptr)w * h;
            m.Height = (size_t)(h + 1) / 2;
            r = cu->cuMemcpy2DAsync(&m, stream);
        }
        // The surface is reused once unmapped: the copy must have run first. The GIL is free meanwhile.
        if (r == CUDA_SUCCESS) r = cu->cuStreamSynchronize(stream);
        cuvid->cuvidUnmapVideoFrame(dec, src);
        if (r != CUDA_SUCCESS) {
            std::lock_guard<std::mutex> g(pool->mu);
            pool->free_slots.push_back(slot);
            return fail(cu_err(r, "copying a frame into the pool"));
        }
        ready.push_back({slot, flags, (int64_t)d->timestamp});
        ++st.frames;
        return 1;
    }

    static int CUDAAPI seq_cb(void *u, CUVIDEOFORMAT *f) { return static_cast<FbtoolNvdecSession *>(u)->on_sequence(f); }
    static int CUDAAPI dec_cb(void *u, CUVIDPICPARAMS *p) { return static_cast<FbtoolNvdecSession *>(u)->on_decode(p); }
    static int CUDAAPI disp_cb(void *u, CUVIDPARSERDISPINFO *d) { return static_cast<FbtoolNvdecSession *>(u)->on_display(d); }
};

EXPORT int fbtool_nvdec_abi(void) { return FBTOOL_NVDEC_ABI; }

EXPORT void fbtool_nvdec_sizes(int32_t *frame, int32_t *stats) {
    *frame = (int32_t)sizeof(FbtoolNvdecFrame);
    *stats = (int32_t)sizeof(FbtoolNvdecStats);
}

EXPORT FbtoolNvdecPool *fbtool_nvdec_pool_create(int32_t gpu, uint64_t base, int64_t slot_bytes, int32_t width,
                                                 int32_t height, int32_t slots, char *err, int32_t errlen) {
    if (width <= 0 || height <= 0 || slots <= 0 || slot_bytes < (int64_t)width * height * 3 / 2 || !base) {
        put_err(err, errlen, "bad pool geometry");
        return nullptr;
    }
    std::string why = load();
    if (!why.empty()) {
        put_err(err, errlen, why);
        return nullptr;
    }
    auto *p = new FbtoolNvdecPool();
    CUresult r = cu->cuDeviceGet(&p->dev, gpu);
    if (r == CUDA_SUCCESS) r = cu->cuDevicePrimaryCtxRetain(&p->ctx, p->dev);
    if (r != CUDA_SUCCESS) {
        put_err(err, errlen, cu_err(r, "retaining the GPU's primary context"));
        delete p;
        return nullptr;
    }
    p->base = (CUdeviceptr)base;
    p->slot_bytes = slot_bytes;
    p->width = width;
    p->height = height;
    p->slots = slots;
    for (int32_t i = slots - 1; i >= 0; --i) p->free_slots.push_back(i);  // slot 0 first
    return p;
}

EXPORT int32_t fbtool_nvdec_pool_release(FbtoolNvdecPool *p, uint64_t stream, int32_t stream_valid,
                                         const int32_t *slots, int32_t n) {
    for (int32_t i = 0; i < n; ++i)
        if (slots[i] < 0 || slots[i] >= p->slots) return FBTOOL_NVDEC_ERROR;
    if (!stream_valid) {
        std::lock_guard<std::mutex> g(p->mu);
        p->free_slots.insert(p->free_slots.end(), slots, slots + n);
        p->cv.notify_all();
        return 0;
    }
    CtxScope c(p->ctx);
    if (!c.ok) return FBTOOL_NVDEC_ERROR;
    std::lock_guard<std::mutex> g(p->mu);
    CUevent ev;
    if (!p->spare_events.empty()) {
        ev = p->spare_events.back();
        p->spare_events.pop_back();
    } else if (cu->cuEventCreate(&ev, CU_EVENT_DISABLE_TIMING | CU_EVENT_BLOCKING_SYNC) != CUDA_SUCCESS) {
        return FBTOOL_NVDEC_ERROR;
    }
    if (cu->cuEventRecord(ev, (CUstream)stream) != CUDA_SUCCESS) {
        p->spare_events.push_back(ev);
        return FBTOOL_NVDEC_ERROR;
    }
    p->pending.push_back({ev, std::vector<int32_t>(slots, slots + n)});
    p->cv.notify_all();
    return 0;
}

EXPORT void fbtool_nvdec_pool_halt(FbtoolNvdecPool *p) {
    std::lock_guard<std::mutex> g(p->mu);
    p->halted = true;
    p->cv.notify_all();
}

EXPORT int32_t fbtool_nvdec_pool_free(FbtoolNvdecPool *p) {
    std::lock_guard<std::mutex> g(p->mu);
    p->reap();
    return (int32_t)p->free_slots.size();
}

EXPORT void fbtool_nvdec_pool_destroy(FbtoolNvdecPool *p) {
    if (!p) return;
    {
        CtxScope c(p->ctx);
        for (auto &x : p->pending) {
            cu->cuEventSynchronize(x.ev);
            cu->cuEventDestroy(x.ev);
        }
        for (CUevent ev : p->spare_events) cu->cuEventDestroy(ev);
    }
    cu->cuDevicePrimaryCtxRelease(p->dev);
    delete p;
}

EXPORT FbtoolNvdecSession *fbtool_nvdec_open(FbtoolNvdecPool *pool, int32_t codec, int32_t extra_surfaces,
                                             int32_t display_delay, char *err, int32_t errlen) {
    if (!pool) {
        put_err(err, errlen, "no pool");
        return nullptr;
    }
    CtxScope c(pool->ctx);
    if (!c.ok) {
        put_err(err, errlen, "cannot make the GPU's primary context current");
        return nullptr;
    }
    auto *s = new FbtoolNvdecSession();
    s->pool = pool;
    s->extra = extra_surfaces < 0 ? 0 : extra_surfaces;
    CUresult r = cu->cuStreamCreate(&s->stream, CU_STREAM_NON_BLOCKING);
    if (r == CUDA_SUCCESS) r = cuvid->cuvidCtxLockCreate(&s->lock, pool->ctx);
    CUVIDPARSERPARAMS pp{};
    pp.CodecType = (cudaVideoCodec)codec;
    pp.ulMaxNumDecodeSurfaces = 1;  // the sequence callback's return value sets the real count
    pp.ulMaxDisplayDelay = display_delay < 0 ? 1 : (unsigned)display_delay;  // NvDecoder's default: 1
    pp.pUserData = s;
    pp.pfnSequenceCallback = FbtoolNvdecSession::seq_cb;
    pp.pfnDecodePicture = FbtoolNvdecSession::dec_cb;
    pp.pfnDisplayPicture = FbtoolNvdecSession::disp_cb;
    if (r == CUDA_SUCCESS) r = cuvid->cuvidCreateVideoParser(&s->parser, &pp);
    if (r != CUDA_SUCCESS) {
        put_err(err, errlen, cu_err(r, "creating the NVDEC parser") + " (codec " + std::to_string(codec) + ")");
        fbtool_nvdec_close(s);
        return nullptr;
    }
    return s;
}

EXPORT int32_t fbtool_nvdec_decode(FbtoolNvdecSession *s, const uint8_t *data, int64_t size, int64_t pts,
                                   int32_t flags, FbtoolNvdecFrame *out, int32_t cap) {
    if (!s->err.empty()) return s->stopped ? FBTOOL_NVDEC_STOPPED : FBTOOL_NVDEC_ERROR;
    if (size > 0 || (flags & FBTOOL_NVDEC_EOS)) {
        CtxScope c(s->pool->ctx);
        if (!c.ok) {
            s->err = "cannot make the GPU's primary context current";
            return FBTOOL_NVDEC_ERROR;
        }
        CUVIDSOURCEDATAPACKET pkt{};
        pkt.payload = size > 0 ? data : nullptr;
        pkt.payload_size = size > 0 ? (tcu_ulong)size : 0;
        pkt.flags = CUVID_PKT_TIMESTAMP | ((flags & FBTOOL_NVDEC_EOS) ? CUVID_PKT_ENDOFSTREAM : 0);
        pkt.timestamp = (CUvideotimestamp)pts;
        CUresult r = cuvid->cuvidParseVideoData(s->parser, &pkt);
        ++s->st.packets;
        if (!s->err.empty()) return s->stopped ? FBTOOL_NVDEC_STOPPED : FBTOOL_NVDEC_ERROR;
        if (r != CUDA_SUCCESS) {
            s->err = cu_err(r, "cuvidParseVideoData") + " (not a valid stream of this codec?)";
            return FBTOOL_NVDEC_ERROR;
        }
    }
    int32_t n = 0;
    while (n < cap && !s->ready.empty()) {
        out[n++] = s->ready.front();
        s->ready.pop_front();
    }
    return n;
}

EXPORT const char *fbtool_nvdec_error(FbtoolNvdecSession *s) { return s->err.c_str(); }

EXPORT int32_t fbtool_nvdec_stats(FbtoolNvdecSession *s, FbtoolNvdecStats *out) {
    *out = s->st;
    return 0;
}

EXPORT void fbtool_nvdec_close(FbtoolNvdecSession *s) {
    if (!s) return;
    {
        CtxScope c(s->pool->ctx);
        if (s->parser) cuvid->cuvidDestroyVideoParser(s->parser);
        if (s->dec) cuvid->cuvidDestroyDecoder(s->dec);
        if (s->lock) cuvid->cuvidCtxLockDestroy(s->lock);
        if (s->stream) cu->cuStreamDestroy(s->stream);
    }
    if (!s->ready.empty()) {
        std::lock_guard<std::mutex> g(s->pool->mu);
        for (auto &f : s->ready) s->pool->free_slots.push_back(f.slot);
        s->pool->cv.notify_all();
    }
    delete s;
}
