// Bilinear affine warp of float32 images: an XLA FFI handler for the CPU.
//
// The same map as mnist_jax/augment.py. For an h x w image with centre
// (cy, cx) and per-image parameters p = (a, b, dy, dx), a = cos(t) / s and
// b = sin(t) / s, output pixel (r, c) reads the input at
//
//   y = cy + a v + b u,   x = cx - b v + a u,   v = r - cy - dy,
//   u = c - cx - dx,
//
// bilinearly, with 0 outside the image (SciPy's "grid-constant"). Each
// image is copied into a zero border (one row and column before, two
// after) and the coordinates are clamped to [-1, n], where the value is 0
// already, so every read is in bounds whatever the parameters. A pixel
// whose source point is NaN (from NaN or infinite parameters) reads the
// corner and is then set to NaN, as the JAX sampler's would be. Reads go
// two floats at a time: each 64-bit load brings a pixel and its right-hand
// neighbour.
//
// Two versions of the inner loop, AVX2 + FMA and plain C++; the first runs
// where the CPU has it, unless the call asks for the other by number. (An
// AVX-512 version was 5-15 % slower than the AVX2 one on the AMD EPYC this
// was measured on, so it was left out.)
// Images are shared out over XLA's intra-op thread pool in small chunks.

#define PY_SSIZE_T_CLEAN
#define Py_LIMITED_API 0x030A0000
#include <Python.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MNIST_JAX_X86 1
#endif

namespace ffi = xla::ffi;

namespace {

enum Isa : int32_t { kBest = 0, kPlain = 1, kAvx2 = 2 };

bool Supports(int32_t isa) {
  switch (isa) {
    case kPlain:
      return true;
#ifdef MNIST_JAX_X86
    case kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default:
      return false;
  }
}

int32_t BestIsa() { return Supports(kAvx2) ? kAvx2 : kPlain; }

// What every image of one call shares: its size, r - cy and c - cx per
// flat pixel (v and u before the shift), and the padded frame's constants:
// y + 1 = ry + a v + b u and x + 1 = rx - b v + a u, clamped to
// [0, ymax] and [0, xmax].
struct Shape {
  int64_t h, w, pw, n;
  float ry, rx, ymax, xmax;
  std::vector<float> rows, cols;

  Shape(int64_t h_, int64_t w_)
      : h(h_), w(w_), pw(w_ + 3), n(h_ * w_),
        ry(0.5f * static_cast<float>(h_ - 1) + 1.0f),
        rx(0.5f * static_cast<float>(w_ - 1) + 1.0f),
        ymax(static_cast<float>(h_ + 1)), xmax(static_cast<float>(w_ + 1)),
        rows(n), cols(n) {
    const float cy = 0.5f * static_cast<float>(h - 1);
    const float cx = 0.5f * static_cast<float>(w - 1);
    for (int64_t i = 0; i < n; ++i) {
      rows[i] = static_cast<float>(i / w) - cy;
      cols[i] = static_cast<float>(i % w) - cx;
    }
  }

  int64_t pad_size() const { return (h + 3) * pw; }
};

// One image's parameters: a = cos(t) / s, b = sin(t) / s and the shift.
struct Map {
  float a, b, dy, dx;
};

// Copies an image into the inside of pad, whose border is zero already.
void FillPad(const Shape& s, const float* image, float* pad) {
  for (int64_t r = 0; r < s.h; ++r) {
    std::memcpy(pad + (r + 1) * s.pw + 1, image + r * s.w, sizeof(float) * s.w);
  }
}

// One output pixel; also the tail of the vector loops.
inline float Pixel(const Shape& s, const Map& m, const float* pad, int64_t i) {
  const float v = s.rows[i] - m.dy, u = s.cols[i] - m.dx;
  float y = s.ry + m.a * v + m.b * u;
  float x = s.rx - m.b * v + m.a * u;
  if (std::isnan(y) || std::isnan(x)) {
    return std::numeric_limits<float>::quiet_NaN();
  }
  y = y > 0.0f ? y : 0.0f;
  x = x > 0.0f ? x : 0.0f;
  y = y < s.ymax ? y : s.ymax;
  x = x < s.xmax ? x : s.xmax;
  const int64_t iy = static_cast<int64_t>(y), ix = static_cast<int64_t>(x);
  const float fy = y - static_cast<float>(iy), fx = x - static_cast<float>(ix);
  const float* q = pad + iy * s.pw + ix;
  const float top = q[0] + (q[1] - q[0]) * fx;
  const float bottom = q[s.pw] + (q[s.pw + 1] - q[s.pw]) * fx;
  return top + (bottom - top) * fy;
}

void WarpPlain(const Shape& s, const Map& m, const float* pad, float* out) {
  for (int64_t i = 0; i < s.n; ++i) out[i] = Pixel(s, m, pad, i);
}

#ifdef MNIST_JAX_X86
// (x0 x1 x4 x5 | x2 x3 x6 x7) -> (x0 ... x7): 64-bit pieces 0, 2, 1, 3.
__attribute__((target("avx2"))) inline __m256 InOrder(__m256 p) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(p), 0xD8));
}

__attribute__((target("avx2,fma"))) void WarpAvx2(const Shape& s, const Map& m,
                                                   const float* pad,
                                                   float* out) {
  const __m256 a = _mm256_set1_ps(m.a), b = _mm256_set1_ps(m.b);
  const __m256 dy = _mm256_set1_ps(m.dy), dx = _mm256_set1_ps(m.dx);
  const __m256 ry = _mm256_set1_ps(s.ry), rx = _mm256_set1_ps(s.rx);
  const __m256 ymax = _mm256_set1_ps(s.ymax), xmax = _mm256_set1_ps(s.xmax);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 nan = _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN());
  const __m256i pw = _mm256_set1_epi32(static_cast<int32_t>(s.pw));
  const double* pairs = reinterpret_cast<const double*>(pad);
  const double* below = reinterpret_cast<const double*>(pad + s.pw);

  int64_t i = 0;
  for (; i + 8 <= s.n; i += 8) {
    const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(&s.rows[i]), dy);
    const __m256 u = _mm256_sub_ps(_mm256_loadu_ps(&s.cols[i]), dx);
    __m256 y = _mm256_fmadd_ps(b, u, _mm256_fmadd_ps(a, v, ry));
    __m256 x = _mm256_fmadd_ps(a, u, _mm256_fnmadd_ps(b, v, rx));
    const __m256 lost = _mm256_cmp_ps(y, x, _CMP_UNORD_Q);  // y or x NaN
    // max(y, 0) returns its second operand for NaN: the read stays inside.
    y = _mm256_min_ps(_mm256_max_ps(y, zero), ymax);
    x = _mm256_min_ps(_mm256_max_ps(x, zero), xmax);
    const __m256i iy = _mm256_cvttps_epi32(y), ix = _mm256_cvttps_epi32(x);
    const __m256 fy = _mm256_sub_ps(y, _mm256_cvtepi32_ps(iy));
    const __m256 fx = _mm256_sub_ps(x, _mm256_cvtepi32_ps(ix));
    const __m256i k = _mm256_add_epi32(_mm256_mullo_epi32(iy, pw), ix);
    const __m128i lo = _mm256_castsi256_si128(k);
    const __m128i hi = _mm256_extracti128_si256(k, 1);

    // Pairs (q[k], q[k + 1]) for pixels 0-3 and 4-7, then split into the
    // left and right neighbours in pixel order.
    const __m256 t0 = _mm256_castpd_ps(_mm256_i32gather_pd(pairs, lo, 4));
    const __m256 t1 = _mm256_castpd_ps(_mm256_i32gather_pd(pairs, hi, 4));
    const __m256 b0 = _mm256_castpd_ps(_mm256_i32gather_pd(below, lo, 4));
    const __m256 b1 = _mm256_castpd_ps(_mm256_i32gather_pd(below, hi, 4));
    const __m256 tl = InOrder(_mm256_shuffle_ps(t0, t1, 0x88));
    const __m256 tr = InOrder(_mm256_shuffle_ps(t0, t1, 0xDD));
    const __m256 bl = InOrder(_mm256_shuffle_ps(b0, b1, 0x88));
    const __m256 br = InOrder(_mm256_shuffle_ps(b0, b1, 0xDD));

    const __m256 top = _mm256_fmadd_ps(_mm256_sub_ps(tr, tl), fx, tl);
    const __m256 bottom = _mm256_fmadd_ps(_mm256_sub_ps(br, bl), fx, bl);
    const __m256 pixel = _mm256_fmadd_ps(_mm256_sub_ps(bottom, top), fy, top);
    _mm256_storeu_ps(out + i, _mm256_blendv_ps(pixel, nan, lost));
  }
  for (; i < s.n; ++i) out[i] = Pixel(s, m, pad, i);
}
#endif

using WarpFn = void (*)(const Shape&, const Map&, const float*, float*);

WarpFn Kernel(int32_t isa) {
#ifdef MNIST_JAX_X86
  if (isa == kAvx2) return WarpAvx2;
#endif
  return WarpPlain;
}

// One call's work, shared by the calling thread and pool tasks. A task that
// starts after every chunk is taken returns without touching the buffers,
// so the call need only wait for the chunks that were taken.
struct Job {
  Shape shape;
  WarpFn warp;
  const float* images;
  const float* params;
  float* out;
  int64_t count, chunk, chunks;
  std::atomic<int64_t> next{0}, done{0};

  Job(int64_t h, int64_t w, WarpFn fn, const float* in, const float* p,
      float* o, int64_t m, int64_t per_chunk)
      : shape(h, w), warp(fn), images(in), params(p), out(o), count(m),
        chunk(per_chunk), chunks((m + per_chunk - 1) / per_chunk) {}

  void Work() {
    std::vector<float> pad;  // zeros, then each image in turn inside the border
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      pad.resize(shape.pad_size(), 0.0f);
      const int64_t end = std::min(count, (c + 1) * chunk);
      for (int64_t j = c * chunk; j < end; ++j) {
        const float* p = params + 4 * j;
        FillPad(shape, images + j * shape.n, pad.data());
        warp(shape, Map{p[0], p[1], p[2], p[3]}, pad.data(), out + j * shape.n);
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error WarpImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> images,
                    ffi::Buffer<ffi::F32> params,
                    ffi::ResultBuffer<ffi::F32> out, int32_t isa) {
  const auto dims = images.dimensions();
  if (dims.size() < 2) {
    return ffi::Error::InvalidArgument("warp needs images (..., h, w)");
  }
  const int64_t h = dims[dims.size() - 2], w = dims[dims.size() - 1];
  const int64_t count = h * w == 0 ? 0 : images.element_count() / (h * w);
  const auto pdims = params.dimensions();
  if (pdims.size() < 1 || pdims[pdims.size() - 1] != 4 ||
      params.element_count() != static_cast<size_t>(4 * count)) {
    return ffi::Error::InvalidArgument("warp needs params (..., 4), one per image");
  }
  if (h > (1 << 14) || w > (1 << 14)) {
    return ffi::Error::InvalidArgument("warp takes images up to 16384 pixels a side");
  }
  if (isa == kBest) isa = BestIsa();
  if (!Supports(isa)) {
    return ffi::Error::InvalidArgument("this CPU lacks the asked-for warp kernel");
  }
  if (count == 0) return ffi::Error::Success();

  // About 32 images a chunk: small enough to share 1,024 images over many
  // threads, large enough that claiming a chunk costs nothing.
  const int64_t per_chunk = std::max<int64_t>(1, std::min<int64_t>(32, count / 8));
  auto job = std::make_shared<Job>(h, w, Kernel(isa), images.typed_data(),
                                   params.typed_data(), out->typed_data(),
                                   count, per_chunk);
  // Known limitation: when XLA's other pool threads are busy or asleep (on
  // the 2-core virtual machine this was measured on, for most calls made
  // back to back) no helper starts in time and the call runs at one
  // thread's speed; a thread of the kernel's own per call did no better.
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), job->chunks) - 1;
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([job] { job->Work(); });
  }
  job->Work();
  while (job->done.load(std::memory_order_acquire) < job->chunks) {
    std::this_thread::yield();
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MnistJaxWarp, WarpImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int32_t>("isa"));

// The Python module: the handler as a capsule, and the kernels this CPU has.

static struct PyModuleDef warp_module = {
    PyModuleDef_HEAD_INIT, "_mnist_jax_warp",
    "mnist-jax's CPU warp kernel, an XLA FFI handler (see mnist_jax.warp).",
    -1, nullptr, nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit__mnist_jax_warp(void) {
  PyObject* module = PyModule_Create(&warp_module);
  if (module == nullptr) return nullptr;
  PyObject* handler =
      PyCapsule_New(reinterpret_cast<void*>(&MnistJaxWarp), nullptr, nullptr);
  // supported[k - 1]: whether inner loop k (1 plain, 2 AVX2) runs here.
  PyObject* supported = Py_BuildValue("(ii)", Supports(kPlain), Supports(kAvx2));
#ifndef MNIST_JAX_BUILT_WITH_JAXLIB
#define MNIST_JAX_BUILT_WITH_JAXLIB "0"
#endif
  // The jaxlib whose FFI headers this was compiled against.
  PyObject* built_with = Py_BuildValue("s", MNIST_JAX_BUILT_WITH_JAXLIB);
  if (built_with == nullptr ||
      PyModule_AddObject(module, "built_with_jaxlib", built_with) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  if (handler == nullptr || supported == nullptr ||
      PyModule_AddObject(module, "handler", handler) < 0 ||
      PyModule_AddObject(module, "supported", supported) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
