/* fbtool's own NVDEC decoder session (plugins/nvdec/nvdec.cpp), C ABI for ctypes
 * (toolchain/blur/fbnvdec.py states the same structs; tests/test_fbnvdec.py checks that both agree).
 *
 * Why it exists (docs/bench.md, issue 18): PyNvVideoCodec 2.2.4 neither exposes the number of NVDEC decode
 * surfaces nor releases the GIL per frame. This session creates its decoder with the stream's
 * min_num_decode_surfaces and one output surface, and copies each displayed frame straight into a slot of
 * fbtool's frame pool (one preallocated buffer on the device), all inside one foreign call, during which
 * ctypes has released the GIL.
 *
 * A pool slot holds one NV12 frame as [height * 3 / 2, width] bytes, rows packed (pitch = width): the luma
 * plane, then the interleaved UV plane. Slots are handed out inside the session (the display callback
 * takes a free one) and come back through fbtool_nvdec_pool_release once the consumer's work that reads
 * them has run on its CUDA stream.
 */
#ifndef FBTOOL_NVDEC_H
#define FBTOOL_NVDEC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FBTOOL_NVDEC_ABI 2

/* fbtool_nvdec_decode flags */
#define FBTOOL_NVDEC_EOS 1 /* end of stream: the parser outputs every frame it still holds */

/* return codes */
#define FBTOOL_NVDEC_ERROR (-1)   /* fbtool_nvdec_error / the err buffer says why */
#define FBTOOL_NVDEC_STOPPED (-2) /* the pool was halted while a frame waited for a free slot */

typedef struct FbtoolNvdecPool FbtoolNvdecPool;
typedef struct FbtoolNvdecSession FbtoolNvdecSession;

/* One frame written into the pool, in display order. */
typedef struct {
    int32_t slot;  /* pool slot index */
    int32_t flags; /* 1: NVDEC reported a decode error for this picture (concealed or not) */
    int64_t pts;   /* the packet's pts, as given to fbtool_nvdec_decode */
} FbtoolNvdecFrame;

typedef struct {
    int32_t codec;               /* cudaVideoCodec of the stream */
    int32_t width, height;       /* display size: the pool's frame size */
    int32_t coded_width, coded_height;
    int32_t min_decode_surfaces; /* the parser's min_num_decode_surfaces */
    int32_t decode_surfaces;     /* what the decoder was created with */
    int32_t output_surfaces;
    int64_t packets, frames, decode_errors;
    int64_t slot_waits;          /* frames that had to wait for a free pool slot */
    double slot_wait_s;          /* time spent waiting (GIL released) */
} FbtoolNvdecStats;

int fbtool_nvdec_abi(void);
/* sizeof of the ABI structs, for the binding's own check */
void fbtool_nvdec_sizes(int32_t *frame, int32_t *stats);

/* Loads libcuda / libnvcuvid (dlopen, nv-codec-headers' loader) and retains device `gpu`'s primary
 * context (PyTorch's). `base`: device address of `slots` frames of `slot_bytes` each. NULL on error. */
FbtoolNvdecPool *fbtool_nvdec_pool_create(int32_t gpu, uint64_t base, int64_t slot_bytes, int32_t width,
                                          int32_t height, int32_t slots, char *err, int32_t errlen);
/* Gives `n` slots back: now (stream_valid 0) or once the work queued so far on CUDA stream `stream` has run. */
int32_t fbtool_nvdec_pool_release(FbtoolNvdecPool *pool, uint64_t stream, int32_t stream_valid,
                                  const int32_t *slots, int32_t n);
/* Wakes every frame waiting for a slot; their decode calls return FBTOOL_NVDEC_STOPPED. */
void fbtool_nvdec_pool_halt(FbtoolNvdecPool *pool);
int32_t fbtool_nvdec_pool_free(FbtoolNvdecPool *pool); /* free slots now (pending releases not counted) */
void fbtool_nvdec_pool_destroy(FbtoolNvdecPool *pool);  /* after every session on it is closed */

/* A parser for `codec` (cudaVideoCodec); the decoder itself is created at the first sequence header with
 * min_num_decode_surfaces + extra_surfaces decode surfaces. display_delay: the parser's ulMaxDisplayDelay
 * (frames decoded ahead of the one displayed; NVIDIA's NvDecoder uses 1). NULL on error. */
FbtoolNvdecSession *fbtool_nvdec_open(FbtoolNvdecPool *pool, int32_t codec, int32_t extra_surfaces,
                                      int32_t display_delay, char *err, int32_t errlen);
/* Parses one packet (size 0 and no flags: only hands out frames already written) and writes up to `cap`
 * displayed frames to `out`; the rest wait for the next call. Returns the count, or < 0. */
int32_t fbtool_nvdec_decode(FbtoolNvdecSession *s, const uint8_t *data, int64_t size, int64_t pts, int32_t flags,
                            FbtoolNvdecFrame *out, int32_t cap);
const char *fbtool_nvdec_error(FbtoolNvdecSession *s);
int32_t fbtool_nvdec_stats(FbtoolNvdecSession *s, FbtoolNvdecStats *out);
/* Frees the decoder and parser; slots of frames not handed out yet go back to the pool. */
void fbtool_nvdec_close(FbtoolNvdecSession *s);

#ifdef __cplusplus
}
#endif
#endif
