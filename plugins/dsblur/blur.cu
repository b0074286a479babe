// fbtool's DeepStream face blur on pitched RGBA and NV12 surfaces (C ABI: fbtool_dsblur.h).
//
// The algorithm and its arithmetic are toolchain/blur/ops/dsblur.py's (the twin the GPU test compares
// with, pixel for pixel): one k per frame and plane, the largest of the objects' max(min_k, floor(short
// side / 3 + 0.5)) (so overlapping blurs never meet in a seam); frame-anchored k x k
// block means; bilinear back up (OpenCV INTER_LINEAR's grid) and a (k|1)-wide box filter, both
// separable, so a pixel's blur is sum_ij Wy_j Wx_i M[j][i] over three cells a side; blended through the
// object's mask sampled bilinearly over its float box, grown by FBTOOL_DSBLUR_GROW about its centre.
// Two launches per plane: block means of the cells each object needs (one thread block per cell), then
// one thread per box pixel. A pixel is
// written only by the object that owns it (the first whose mask reaches it), and the means
// are taken before any pixel is written, so overlapping objects never race.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fbtool_dsblur.h"

namespace {

constexpr double kBlocksPerFace = 3.0;
constexpr double kGrow = FBTOOL_DSBLUR_GROW;
constexpr int kMaxChannels = 4;

struct Obj {
  double left, top, width, height;  // plane pixels
  int x0, x1, y0, y1;               // pixels whose centres lie in the box, clipped to the plane
  int k;
  int cx0, ncx, cy0, ncy;           // block-mean cells this object reads
  long long cell_off;               // into the means buffer (cells, each kMaxChannels doubles)
  long long mask_off;               // into the mask buffer (floats); -1: no mask (whole box)
  int mask_w, mask_h;
};

__host__ __device__ inline int cells_of(int n, int k) { return (n + k - 1) / k; }

__host__ __device__ inline double grid_pos(int x, int k, int nc) {
  double u = (x + 0.5) / k - 0.5;
  return u < 0 ? 0 : (u > nc - 1 ? nc - 1 : u);
}

// Products through __dmul_rn: never fused into a multiply-add, whatever -fmad says, so the kernel rounds
// exactly as the twin (numpy / torch float64) does.
__device__ inline double mul(double a, double b) { return __dmul_rn(a, b); }

__device__ inline double mask_at(const Obj& o, const float* masks, int x, int y) {
  if (o.mask_off < 0) return 1.0;
  const float* g = masks + o.mask_off;
  double u = mul((x + 0.5 - o.left) / o.width, (double)o.mask_w) - 0.5;
  double v = mul((y + 0.5 - o.top) / o.height, (double)o.mask_h) - 0.5;
  u = fmin(fmax(u, 0.0), (double)(o.mask_w - 1));
  v = fmin(fmax(v, 0.0), (double)(o.mask_h - 1));
  int ix0 = (int)floor(u), iy0 = (int)floor(v);
  int ix1 = min(ix0 + 1, o.mask_w - 1), iy1 = min(iy0 + 1, o.mask_h - 1);
  double fx = u - ix0, fy = v - iy0;
  double top = mul(g[iy0 * o.mask_w + ix0], 1 - fx) + mul(g[iy0 * o.mask_w + ix1], fx);
  double bot = mul(g[iy1 * o.mask_w + ix0], 1 - fx) + mul(g[iy1 * o.mask_w + ix1], fx);
  double m = mul(top, 1 - fy) + mul(bot, fy);
  return fmin(fmax(m, 0.0), 1.0);
}

// One thread block per (object, cell): the cell's mean per channel.
template <int C, int NB>
__global__ void block_means(const unsigned char* plane, int pitch, int w, int h, const Obj* objs, int n,
                            const long long* cell_start, double* means) {
  long long cell = blockIdx.x;
  int oi = 0;
  while (oi + 1 < n && cell_start[oi + 1] <= cell) ++oi;
  const Obj& o = objs[oi];
  long long local = cell - cell_start[oi];
  int cy = o.cy0 + (int)(local / o.ncx), cx = o.cx0 + (int)(local % o.ncx);
  int xa = cx * o.k, xb = min(xa + o.k, w), ya = cy * o.k, yb = min(ya + o.k, h);
  int bw = xb - xa, cnt = bw * (yb - ya);
  unsigned long long s[NB];
  for (int c = 0; c < NB; ++c) s[c] = 0;
  for (int i = threadIdx.x; i < cnt; i += blockDim.x) {
    const unsigned char* p = plane + (size_t)(ya + i / bw) * pitch + (size_t)(xa + i % bw) * C;
    for (int c = 0; c < NB; ++c) s[c] += p[c];
  }
  __shared__ unsigned long long part[NB][256];
  for (int c = 0; c < NB; ++c) part[c][threadIdx.x] = s[c];
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if ((int)threadIdx.x < stride)
      for (int c = 0; c < NB; ++c) part[c][threadIdx.x] += part[c][threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    for (int c = 0; c < NB; ++c) means[(o.cell_off + local) * kMaxChannels + c] = (double)part[c][0] / (double)cnt;
}

// Separable weights of pixel x on its axis: three cells from `first` (the twin's _axis_weights).
__device__ inline void axis_weights(int x, int n, int k, double* wgt, int* first) {
  int r = k / 2, nc = cells_of(n, k);
  int lo = max(x - r, 0), hi = min(x + r + 1, n);
  int base = (int)floor(grid_pos(lo, k, nc));
  wgt[0] = wgt[1] = wgt[2] = 0;
  for (int p = lo; p < hi; ++p) {
    double u = grid_pos(p, k, nc);
    int i0 = (int)floor(u);
    double f = u - i0;
    int i1 = min(i0 + 1, nc - 1);
    wgt[i0 - base] += 1 - f;
    wgt[i1 - base] += f;
  }
  for (int i = 0; i < 3; ++i) wgt[i] /= (double)(hi - lo);
  *first = base;
}

template <int C, int NB>
__global__ void blend(unsigned char* plane, int pitch, int w, int h, const Obj* objs, int n, const float* masks,
                      const double* means) {
  int oi = blockIdx.z;
  const Obj& o = objs[oi];
  int x = o.x0 + blockIdx.x * blockDim.x + threadIdx.x;
  int y = o.y0 + blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= o.x1 || y >= o.y1) return;
  // Ownership and the union mask: every object whose box holds the pixel and whose mask reaches it.
  double m = 0;
  int owner = -1;
  for (int j = 0; j < n; ++j) {
    const Obj& q = objs[j];
    if (x < q.x0 || x >= q.x1 || y < q.y0 || y >= q.y1) continue;
    double mj = mask_at(q, masks, x, y);
    if (!(mj > 0)) continue;
    m = fmax(m, mj);
    if (owner < 0) owner = j;  // one k per plane: the first object whose mask reaches it writes it
  }
  if (owner != oi) return;
  double wx[3], wy[3];
  int fx, fy;
  axis_weights(x, w, o.k, wx, &fx);
  axis_weights(y, h, o.k, wy, &fy);
  unsigned char* p = plane + (size_t)y * pitch + (size_t)x * C;
  for (int c = 0; c < NB; ++c) {
    double b = 0;
    for (int j = 0; j < 3; ++j) {
      int cy = fy + j - o.cy0;
      if (cy < 0 || cy >= o.ncy || wy[j] == 0) continue;
      double row = 0;
      for (int i = 0; i < 3; ++i) {
        int cx = fx + i - o.cx0;
        if (cx < 0 || cx >= o.ncx || wx[i] == 0) continue;
        row += mul(wx[i], means[(o.cell_off + (long long)cy * o.ncx + cx) * kMaxChannels + c]);
      }
      b += mul(wy[j], row);
    }
    double f = p[c];
    double v = floor(f + mul(m, b - f) + 0.5);
    p[c] = (unsigned char)(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
}

// The cells an axis [a, b) reads: those under the hats of the pixels its box windows cover.
void cell_range(int a, int b, int n, int k, int* c0, int* count) {
  int r = k / 2, nc = cells_of(n, k);
  int lo = a - r < 0 ? 0 : a - r, hi = (b - 1 + r) > n - 1 ? n - 1 : b - 1 + r;
  int first = (int)std::floor(grid_pos(lo, k, nc));
  int last = (int)std::floor(grid_pos(hi, k, nc)) + 1;
  if (last > nc - 1) last = nc - 1;
  *c0 = first;
  *count = last - first + 1;
}

int pixel_begin(double start) { return (int)std::ceil(start - 0.5); }

template <int C, int NB>
int blur_plane(unsigned char* dev, int pitch, int w, int h, const FbtoolDsBlurObject* in, int n, double scale,
               int min_k, cudaStream_t stream) {
  std::vector<Obj> objs;
  std::vector<long long> cell_start;
  std::vector<float> masks;
  long long cells = 0;
  for (int i = 0; i < n; ++i) {
    const FbtoolDsBlurObject& s = in[i];
    Obj o{};
    o.left = (double)s.left * scale;
    o.top = (double)s.top * scale;
    o.width = (double)s.width * scale;
    o.height = (double)s.height * scale;
    o.left = o.left - o.width * ((kGrow - 1) / 2);
    o.top = o.top - o.height * ((kGrow - 1) / 2);
    o.width = o.width * kGrow;
    o.height = o.height * kGrow;
    if (!(o.width > 0 && o.height > 0)) continue;
    o.x0 = std::max(pixel_begin(o.left), 0);
    o.x1 = std::min(pixel_begin(o.left + o.width), w);
    o.y0 = std::max(pixel_begin(o.top), 0);
    o.y1 = std::min(pixel_begin(o.top + o.height), h);
    if (o.x0 >= o.x1 || o.y0 >= o.y1) continue;
    o.k = std::max(min_k, (int)std::floor(std::min(o.width, o.height) / kBlocksPerFace + 0.5));
    if (s.mask_host && s.mask_w > 0 && s.mask_h > 0) {
      o.mask_off = (long long)masks.size();
      o.mask_w = s.mask_w;
      o.mask_h = s.mask_h;
      masks.insert(masks.end(), s.mask_host, s.mask_host + (size_t)s.mask_w * s.mask_h);
    } else {
      o.mask_off = -1;
    }
    objs.push_back(o);
  }
  int m = (int)objs.size();
  if (m == 0) return 0;
  // One k for the frame, the largest object's: two blurs of different k meeting inside a face would
  // draw a seam, which is detail (docs/deepstream.md); fbtool blur does the same (ops/cpu.py blur_factor).
  int k = 0;
  for (const Obj& o : objs) k = std::max(k, o.k);
  for (Obj& o : objs) {
    o.k = k;
    cell_range(o.x0, o.x1, w, o.k, &o.cx0, &o.ncx);
    cell_range(o.y0, o.y1, h, o.k, &o.cy0, &o.ncy);
    o.cell_off = cells;
    cell_start.push_back(cells);
    cells += (long long)o.ncx * o.ncy;
  }
  // One device buffer for the objects, cell offsets, masks and means (stream-ordered allocation).
  size_t b_objs = sizeof(Obj) * m, b_start = sizeof(long long) * m, b_masks = sizeof(float) * masks.size();
  auto up8 = [](size_t v) { return (v + 255) & ~size_t(255); };
  size_t o_start = up8(b_objs), o_masks = o_start + up8(b_start), o_means = o_masks + up8(b_masks);
  size_t total = o_means + sizeof(double) * kMaxChannels * (size_t)cells;
  std::vector<unsigned char> host(o_means);
  std::memcpy(host.data(), objs.data(), b_objs);
  std::memcpy(host.data() + o_start, cell_start.data(), b_start);
  if (b_masks) std::memcpy(host.data() + o_masks, masks.data(), b_masks);
  unsigned char* buf = nullptr;
  cudaError_t e = cudaMallocAsync((void**)&buf, total, stream);
  if (e != cudaSuccess) return (int)e;
  // Pageable source: the copy has finished reading `host` when cudaMemcpyAsync returns.
  e = cudaMemcpyAsync(buf, host.data(), o_means, cudaMemcpyHostToDevice, stream);
  if (e == cudaSuccess) {
    const Obj* d_objs = (const Obj*)buf;
    double* d_means = (double*)(buf + o_means);
    block_means<C, NB><<<(unsigned)cells, 256, 0, stream>>>(dev, pitch, w, h, d_objs, m,
                                                             (const long long*)(buf + o_start), d_means);
    e = cudaGetLastError();
    if (e == cudaSuccess) {
      int mw = 0, mh = 0;
      for (const Obj& o : objs) mw = std::max(mw, o.x1 - o.x0), mh = std::max(mh, o.y1 - o.y0);
      dim3 block(16, 16), grid((mw + 15) / 16, (mh + 15) / 16, m);
      blend<C, NB><<<grid, block, 0, stream>>>(dev, pitch, w, h, d_objs, m, (const float*)(buf + o_masks), d_means);
      e = cudaGetLastError();
    }
  }
  cudaError_t f = cudaFreeAsync(buf, stream);
  return (int)(e != cudaSuccess ? e : f);
}

}  // namespace

extern "C" int fbtool_dsblur_rgba(unsigned char* dev, int pitch, int width, int height, const FbtoolDsBlurObject* objs,
                                  int n, void* cuda_stream) {
  if (!dev || width <= 0 || height <= 0 || pitch < 4 * width || n < 0 || (n && !objs)) return -1;
  return blur_plane<4, 3>(dev, pitch, width, height, objs, n, 1.0, 4, (cudaStream_t)cuda_stream);
}

extern "C" int fbtool_dsblur_nv12(unsigned char* y, int y_pitch, unsigned char* uv, int uv_pitch, int width, int height,
                                  const FbtoolDsBlurObject* objs, int n, void* cuda_stream) {
  if (!y || !uv || width <= 0 || height <= 0 || y_pitch < width || uv_pitch < 2 * ((width + 1) / 2) || n < 0 ||
      (n && !objs))
    return -1;
  cudaStream_t s = (cudaStream_t)cuda_stream;
  int e = blur_plane<1, 1>(y, y_pitch, width, height, objs, n, 1.0, 4, s);
  if (e) return e;
  return blur_plane<2, 2>(uv, uv_pitch, (width + 1) / 2, (height + 1) / 2, objs, n, 0.5, 2, s);
}
