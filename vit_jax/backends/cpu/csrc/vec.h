// What the float32 kernels for XLA:CPU share: a vector of floats as wide as
// the target's registers, exp, a square block transpose and a parallel loop
// on XLA's intra-op threads. Each kernel file defines its FFI handlers; all
// are built into one library (vit_jax/backends/cpu/kernels.py).
#ifndef VIT_JAX_KERNELS_VEC_H_
#define VIT_JAX_KERNELS_VEC_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace vit {

namespace ffi = xla::ffi;
using Buf = ffi::Buffer<ffi::F32>;

// One vector of kLanes floats (GCC and Clang vector extensions): a zmm
// register with AVX-512, a ymm register elsewhere (two xmm or NEON
// registers without AVX). kRegisters of them fit in the register file,
// which sizes the matmul blocks (attention.cc).
#if defined(__AVX512F__)
constexpr int kLanes = 16, kRegisters = 32;
#else
constexpr int kLanes = 8, kRegisters = 16;
#endif
typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef int32_t vi __attribute__((vector_size(4 * kLanes)));
// What the kernels take, whatever the vector width: rows a multiple of 16
// floats wide (head_dim, LayerNorm and MLP widths); attention's tokens are
// padded to a multiple of 16 (kernels.py's LANES).
constexpr int kWidth = 16;
static_assert(kWidth % kLanes == 0, "a row of kWidth floats is whole vectors");

inline vf load(const float* p) { vf v; __builtin_memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
inline vf splat(float x) { return x - vf{}; }  // not 0 + x: one broadcast, no add
inline float hsum(vf v) { float s = 0; for (int i = 0; i < kLanes; ++i) s += v[i]; return s; }
inline float hmax(vf v) { float m = v[0]; for (int i = 1; i < kLanes; ++i) m = std::max(m, v[i]); return m; }
// exp(x) to about 1 ulp: 2^n e^r, |r| <= ln2/2, Cephes' polynomial for e^r.
inline vf vexp(vf x) {
  x = x < splat(-87.3f) ? splat(-87.3f) : x;
  x = x > splat(88.3f) ? splat(88.3f) : x;
  const vf magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  vf t = x * splat(1.44269504088896341f) + magic;
  vf n = t - magic;
  vf r = x - n * splat(0.693359375f) + n * splat(2.12194440e-4f);
  vf p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * r * r + r + splat(1.0f);
  vi bits; __builtin_memcpy(&bits, &t, sizeof bits);
  vi scale = (bits - vi{} - 0x4B400000) << 23;  // n as 2^n's exponent bits
  vi pb; __builtin_memcpy(&pb, &p, sizeof pb);
  pb += scale;
  vf out; __builtin_memcpy(&out, &pb, sizeof out);
  return out;
}

// 1 / x to about 1 ulp: with AVX-512 a 14-bit estimate and one Newton
// step (3 instructions where a division takes 5 to 10 cycles), else a division.
inline vf reciprocal(vf x) {
#if defined(__AVX512F__)
  const vf r = _mm512_rcp14_ps(x);
  return r * (splat(2.0f) - x * r);
#else
  return splat(1.0f) / x;
#endif
}

inline int round_up(int n) { return (n + kWidth - 1) / kWidth * kWidth; }

// dst[j][i] = src[i][j] for i, j < kLanes, rows lds and ldd apart: kLanes
// loads, the exchange in registers, kLanes stores; twice as fast as element
// by element.
inline void transpose_block(const float* src, int64_t lds, float* dst, int64_t ldd) {
  vf rows[kLanes];
  for (int i = 0; i < kLanes; ++i) rows[i] = load(src + i * lds);
  alignas(64) float tile[kLanes][kLanes];
  for (int i = 0; i < kLanes; ++i)
    for (int j = 0; j < kLanes; ++j) tile[j][i] = rows[i][j];
  for (int j = 0; j < kLanes; ++j) store(dst + j * ldd, load(tile[j]));
}

// How every kernel's FFI binding starts: with XLA's intra-op threads, which
// parallel_for shares the work among.
inline auto threaded_binding() { return ffi::Ffi::Bind().Ctx<ffi::ThreadPool>(); }

// Runs task(0..n-1) on XLA's intra-op threads and this one; returns when all are done.
template <typename F>
void parallel_for(ffi::ThreadPool& pool, int n, F task) {
  struct State { std::atomic<int> next{0}, done{0}; };
  auto state = std::make_shared<State>();
  auto work = [state, n, task]() {
    for (int i; (i = state->next.fetch_add(1)) < n;) {
      task(i);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  int helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int h = 0; h < helpers; ++h) pool.Schedule([work] { work(); });
  work();
  // a helper finishes its task; yielding lets it run where the cores are shared
  while (state->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}


// Rows [r0, r1) of R at a time, kRows a task, on XLA's intra-op threads.
constexpr int kRows = 32;

template <typename F>
void parallel_rows(ffi::ThreadPool& pool, int64_t R, F rows) {
  parallel_for(pool, int((R + kRows - 1) / kRows), [=](int t) {
    rows(int64_t{t} * kRows, std::min(R, int64_t{t + 1} * kRows));
  });
}

// parallel_rows where each task also sums columns: rows(r0, r1, sums) adds
// into its own zeroed `width` floats, which are then added into `out` in
// task order, so the sums do not depend on which thread ran what.
template <typename F>
void parallel_rows_summed(ffi::ThreadPool& pool, int64_t R, int64_t width, float* out, F rows) {
  const int tasks = int((R + kRows - 1) / kRows);
  std::vector<float> partial(static_cast<size_t>(tasks) * width, 0.0f);
  float* sums = partial.data();
  parallel_for(pool, tasks, [=](int t) {
    rows(int64_t{t} * kRows, std::min(R, int64_t{t + 1} * kRows), sums + t * width);
  });
  std::fill(out, out + width, 0.0f);
  for (int t = 0; t < tasks; ++t)
    for (int64_t c = 0; c < width; ++c) out[c] += sums[t * width + c];
}

}  // namespace vit

#endif  // VIT_JAX_KERNELS_VEC_H_
