// Fused multi-head attention for XLA:CPU as FFI custom calls (float32):
// training forward, backward, and an inference forward.
//
// Why: XLA:CPU runs attention's batched matmuls (batch x heads of
// tokens x head_dim products) on one thread at about 75 GFLOP/s. Here each
// (image, head) pair is one task, the tasks are shared among XLA's
// intra-op threads, and the scores stay in cache between the two matmuls
// and the softmax (a (tokens, tokens) block is 155 KB at 197 tokens).
//
// Layout: q (batch, queries, heads, head_dim), k and v (batch, tokens,
// heads, head_dim), as the projections produce them; head_dim % 16 == 0.
// Forward: y = softmax(scale q k^T) v, and in training the weights
// themselves (batch, heads, queries, tokens rounded up to 16), kept for the
// backward pass as XLA's own attention keeps them.
#include <cmath>
#include <vector>

#include "vec.h"

namespace vit {
namespace {

// C[MR x 16 NV] = A[MR x K] B[K x 16 NV]: A's elements broadcast, B's rows
// loaded. A is row-major with row stride lda, or with kTransA column-major
// (A^T row-major) with that stride: the strides are constants in the loop.
template <int MR, int NV, bool kTransA>
inline void micro(int K, const float* A, int64_t lda, const float* B, int64_t ldb,
                  float* C, int64_t ldc) {
  vf acc[MR][NV];
  for (int r = 0; r < MR; ++r) for (int v = 0; v < NV; ++v) acc[r][v] = vf{};
  for (int k = 0; k < K; ++k) {
    vf b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load(B + k * ldb + kLanes * v);
    for (int r = 0; r < MR; ++r) {
      vf a = splat(kTransA ? A[k * lda + r] : A[r * lda + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) store(C + r * ldc + kLanes * v, acc[r][v]);
}

// A panel's rows at a time: MR x NV accumulators, the NV vectors of B and
// A's broadcast fit in the registers (with 32: 24 accumulators, 8 rows of 3
// vectors or 12 of 2; with 16: 6 rows of 2), 12 at most.
template <int NV>
constexpr int block_rows() { return NV == 3 ? 8 : std::min(12, (kRegisters - NV - 1) / NV); }

template <int NV, bool kTransA>
void row_panel(int M, int K, const float* A, int64_t lda, const float* B, int64_t ldb,
               float* C, int64_t ldc) {
  constexpr int MR = block_rows<NV>();
  const int64_t row_step = kTransA ? 1 : lda;
  int i = 0;
  for (; i + MR <= M; i += MR)
    micro<MR, NV, kTransA>(K, A + i * row_step, lda, B, ldb, C + i * ldc, ldc);
  A += i * row_step;
  C += i * ldc;
  switch (M - i) {
#define VIT_TAIL(m) case m: micro<m, NV, kTransA>(K, A, lda, B, ldb, C, ldc); break;
    VIT_TAIL(1) VIT_TAIL(2) VIT_TAIL(3) VIT_TAIL(4) VIT_TAIL(5) VIT_TAIL(6)
    VIT_TAIL(7) VIT_TAIL(8) VIT_TAIL(9) VIT_TAIL(10) VIT_TAIL(11)
#undef VIT_TAIL
    default: break;
  }
}

// C[M x N] = A[M x K] B[K x N] (A^T given when kTransA); B and C row-major
// with row strides, N % kLanes == 0. With 32 registers, panels of three
// vectors, and of two where three do not divide N, not of one: 12
// broadcasts to each vector loaded run slower (a head_dim of 64 as two
// panels of two: its value product +10%). With 16, panels of two (6 rows),
// and one of one where N is an odd number of vectors.
template <bool kTransA = false>
void gemm(int M, int N, int K, const float* A, int64_t lda, const float* B, int64_t ldb,
          float* C, int64_t ldc) {
  const int vectors = N / kLanes;
  if (vectors == 1) return row_panel<1, kTransA>(M, K, A, lda, B, ldb, C, ldc);
  int threes = 0, twos = vectors / 2;
  if constexpr (kRegisters >= 32) {
    twos = (3 - vectors % 3) % 3;
    threes = (vectors - 2 * twos) / 3;
    for (int p = 0; p < threes; ++p, B += 3 * kLanes, C += 3 * kLanes)
      row_panel<3, kTransA>(M, K, A, lda, B, ldb, C, ldc);
  }
  for (int p = 0; p < twos; ++p, B += 2 * kLanes, C += 2 * kLanes)
    row_panel<2, kTransA>(M, K, A, lda, B, ldb, C, ldc);
  if (vectors - 3 * threes - 2 * twos) row_panel<1, kTransA>(M, K, A, lda, B, ldb, C, ldc);
}

// dst[D x ldd] = src[rows x D]^T (src rows ld apart), columns rows..ldd
// zero; D % 16 == 0.
void pack_transposed(int rows, int D, const float* src, int64_t ld, float* dst, int ldd) {
  int i = 0;
  for (; i + kLanes <= rows; i += kLanes)
    for (int d = 0; d < D; d += kLanes)
      transpose_block(src + i * ld + d, ld, dst + d * ldd + i, ldd);
  for (int d = 0; d < D; ++d) std::fill(dst + d * ldd + i, dst + (d + 1) * ldd, 0.0f);
  for (; i < rows; ++i)
    for (int d = 0; d < D; ++d) dst[d * ldd + i] = src[i * ld + d];
}

// dst[rows x D] = src[rows x D], src rows ld apart, D % 16 == 0: a head's
// rows made contiguous, which the matmuls read faster than rows a whole
// token's width apart (10% on the value product).
void pack_rows(int rows, int D, const float* src, int64_t ld, float* dst) {
  for (int i = 0; i < rows; ++i)
    for (int d = 0; d < D; d += kLanes) store(dst + i * D + d, load(src + i * ld + d));
}

struct Shape {
  int B, Tq, T, H, D;
  int Tp() const { return round_up(T); }      // keys, padded to whole vectors
  int64_t ld() const { return int64_t{H} * D; }  // the row stride of q, k, v, y
  int64_t q_offset(int bh) const { return (int64_t{bh / H} * Tq * H + bh % H) * D; }
  int64_t kv_offset(int bh) const { return (int64_t{bh / H} * T * H + bh % H) * D; }
};

// Stores v at p, which is 64-byte aligned, bypassing the caches where the
// target has streaming stores: the weights kept for the backward pass are
// read again only after the rest of the forward pass.
inline void store_streaming(float* p, vf v) {
#if defined(__AVX512F__)
  __builtin_ia32_movntps512(p, v);
#elif defined(__AVX__)
  __builtin_ia32_movntps256(p, v);
#else
  store(p, v);
#endif
}

// Orders the streaming stores before the task is reported done.
inline void fence_streaming() {
#if defined(__AVX__)
  __builtin_ia32_sfence();
#endif
}

// y = P v with P = softmax(scale q k^T); with `probs`, the weights P are
// kept there for the backward pass. P is built in a per-thread block that
// stays in cache for the value product (197 tokens: 164 KB); q, k^T and v
// are packed first.
void forward_task(const Shape& s, float scale, int bh, const float* q, const float* k,
                  const float* v, float* y, float* probs) {
  const int Tp = s.Tp();
  const int64_t ld = s.ld();
  thread_local std::vector<float> kt, block, qb, vb;
  kt.resize(static_cast<size_t>(s.D) * Tp);
  block.resize(static_cast<size_t>(s.Tq) * Tp);
  qb.resize(static_cast<size_t>(s.Tq) * s.D);
  vb.resize(static_cast<size_t>(s.T) * s.D);
  float* p = block.data();
  float* kept = probs ? probs + int64_t{bh} * s.Tq * Tp : nullptr;
  const bool aligned = kept && reinterpret_cast<uintptr_t>(kept) % sizeof(vf) == 0;
  pack_rows(s.Tq, s.D, q + s.q_offset(bh), ld, qb.data());
  pack_transposed(s.T, s.D, k + s.kv_offset(bh), ld, kt.data(), Tp);
  pack_rows(s.T, s.D, v + s.kv_offset(bh), ld, vb.data());
  gemm(s.Tq, Tp, s.D, qb.data(), s.D, kt.data(), Tp, p, Tp);
  for (int i = 0; i < s.Tq; ++i) {
    float* row = p + i * Tp;
    for (int j = s.T; j < Tp; ++j) row[j] = -INFINITY;
    vf m = load(row);
    for (int j = kLanes; j < Tp; j += kLanes) { vf x = load(row + j); m = x > m ? x : m; }
    const vf shift = splat(scale * hmax(m));
    vf sum = vf{};
    for (int j = 0; j < Tp; j += kLanes) {
      vf e = vexp(load(row + j) * splat(scale) - shift);
      store(row + j, e);
      sum += e;
    }
    for (int j = s.T; j < Tp; ++j) row[j] = 0.0f;
    const vf inv = splat(1.0f / hsum(sum));
    for (int j = 0; j < Tp; j += kLanes) {
      const vf w = load(row + j) * inv;
      store(row + j, w);
      if (aligned) store_streaming(kept + i * Tp + j, w);
      else if (kept) store(kept + i * Tp + j, w);
    }
  }
  if (aligned) fence_streaming();
  gemm(s.Tq, s.D, s.T, p, Tp, vb.data(), s.D, y + s.q_offset(bh), ld);
}

// dv = P^T dy, dS = P (dy v^T - rowsum(dy y)) scale, dk = dS^T q, dq = dS k,
// with dy, q and k packed and v^T packed.
void backward_task(const Shape& s, float scale, int bh, const float* q, const float* k,
                   const float* v, const float* y, const float* probs, const float* dy,
                   float* dq, float* dk, float* dv) {
  const int Tp = s.Tp(), D = s.D;
  const int64_t ld = s.ld(), qo = s.q_offset(bh), kvo = s.kv_offset(bh);
  const float* p = probs + int64_t{bh} * s.Tq * Tp;
  thread_local std::vector<float> vt, ds, dyb, qb, kb;
  vt.resize(static_cast<size_t>(D) * Tp);
  ds.resize(static_cast<size_t>(s.Tq) * Tp);
  dyb.resize(static_cast<size_t>(s.Tq) * D);
  qb.resize(static_cast<size_t>(s.Tq) * D);
  kb.resize(static_cast<size_t>(s.T) * D);
  pack_transposed(s.T, D, v + kvo, ld, vt.data(), Tp);
  pack_rows(s.Tq, D, dy + qo, ld, dyb.data());
  pack_rows(s.Tq, D, q + qo, ld, qb.data());
  pack_rows(s.T, D, k + kvo, ld, kb.data());
  gemm(s.Tq, Tp, D, dyb.data(), D, vt.data(), Tp, ds.data(), Tp);
  for (int i = 0; i < s.Tq; ++i) {
    vf acc = vf{};
    for (int d = 0; d < D; d += kLanes)
      acc += load(dyb.data() + i * D + d) * load(y + qo + i * ld + d);
    const vf delta = splat(hsum(acc));
    float* g = ds.data() + i * Tp;
    for (int j = 0; j < Tp; j += kLanes)
      store(g + j, load(p + i * Tp + j) * (load(g + j) - delta) * splat(scale));
  }
  gemm<true>(s.T, D, s.Tq, p, Tp, dyb.data(), D, dv + kvo, ld);
  gemm<true>(s.T, D, s.Tq, ds.data(), Tp, qb.data(), D, dk + kvo, ld);
  gemm(s.Tq, D, s.T, ds.data(), Tp, kb.data(), D, dq + qo, ld);
}

ffi::ErrorOr<Shape> shape_of(ffi::Buffer<ffi::F32>& q, ffi::Buffer<ffi::F32>& k) {
  auto qd = q.dimensions(), kd = k.dimensions();
  if (qd.size() != 4 || kd.size() != 4 || qd[0] != kd[0] || qd[2] != kd[2] || qd[3] != kd[3])
    return ffi::Unexpected(ffi::Error::InvalidArgument("attention_cpu: q and k must be (batch, tokens, heads, head_dim)"));
  if (kd[3] % kWidth != 0)
    return ffi::Unexpected(ffi::Error::InvalidArgument("attention_cpu: head_dim must be a multiple of 16"));
  return Shape{int(qd[0]), int(qd[1]), int(kd[1]), int(qd[2]), int(qd[3])};
}

ffi::Error RunForward(ffi::ThreadPool& pool, ffi::Buffer<ffi::F32>& q, ffi::Buffer<ffi::F32>& k,
                      ffi::Buffer<ffi::F32>& v, float scale, float* y, float* probs) {
  auto s = shape_of(q, k);
  if (s.has_error()) return s.error();
  parallel_for(pool, s->B * s->H, [&, s = *s](int bh) {
    forward_task(s, scale, bh, q.typed_data(), k.typed_data(), v.typed_data(), y, probs);
  });
  return ffi::Error::Success();
}

// The forward pass of training: y and the weights for the backward pass.
ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                   ffi::Buffer<ffi::F32> v, float scale, ffi::ResultBuffer<ffi::F32> y,
                   ffi::ResultBuffer<ffi::F32> probs) {
  return RunForward(pool, q, k, v, scale, y->typed_data(), probs->typed_data());
}

// y alone, where nothing is differentiated: no weights kept.
ffi::Error Inference(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                     ffi::Buffer<ffi::F32> v, float scale, ffi::ResultBuffer<ffi::F32> y) {
  return RunForward(pool, q, k, v, scale, y->typed_data(), nullptr);
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                    ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> y, ffi::Buffer<ffi::F32> probs,
                    ffi::Buffer<ffi::F32> dy, float scale, ffi::ResultBuffer<ffi::F32> dq,
                    ffi::ResultBuffer<ffi::F32> dk, ffi::ResultBuffer<ffi::F32> dv) {
  auto s = shape_of(q, k);
  if (s.has_error()) return s.error();
  parallel_for(pool, s->B * s->H, [&, s = *s](int bh) {
    backward_task(s, scale, bh, q.typed_data(), k.typed_data(), v.typed_data(), y.typed_data(),
                  probs.typed_data(), dy.typed_data(), dq->typed_data(), dk->typed_data(),
                  dv->typed_data());
  });
  return ffi::Error::Success();
}

// The attention entries' common start: XLA's threads, then q, k and v.
auto attention_binding() {
  return threaded_binding().Arg<Buf>().Arg<Buf>().Arg<Buf>();
}

}  // namespace
}  // namespace vit

using vit::Buf;

XLA_FFI_DEFINE_HANDLER_SYMBOL(VitAttentionForward, vit::Forward,
                              vit::attention_binding().Attr<float>("scale").Ret<Buf>().Ret<Buf>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(VitAttentionInference, vit::Inference,
                              vit::attention_binding().Attr<float>("scale").Ret<Buf>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(VitAttentionBackward, vit::Backward,  // + y, the weights, dy
                              vit::attention_binding().Arg<Buf>().Arg<Buf>().Arg<Buf>()
                                  .Attr<float>("scale").Ret<Buf>().Ret<Buf>().Ret<Buf>());
