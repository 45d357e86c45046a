// The MLP's bias and GELU for XLA:CPU as FFI custom calls (float32): h =
// gelu(z + bias) forward; backward dz = dh gelu'(z + bias) and the bias's
// gradient, the sum of dz over rows, in the same pass. XLA:CPU makes three
// passes of these (vit_jax/cpu_kernels.py).
#include "vec.h"

namespace vit {
namespace {

// erf(x) as Eigen's and XLA:CPU's float32 rational approximation: x P(x^2) /
// Q(x^2) on x clamped to [-4, 4], where erf is +-1 in float32.
inline vf verf(vf x) {
  x = x < splat(-4.0f) ? splat(-4.0f) : x;
  x = x > splat(4.0f) ? splat(4.0f) : x;
  const vf x2 = x * x;
  vf p = x2 * splat(-2.72614225801306e-10f) + splat(2.77068142495902e-08f);
  p = x2 * p + splat(-2.10102402082508e-06f);
  p = x2 * p + splat(-5.69250639462346e-05f);
  p = x2 * p + splat(-7.34990630326855e-04f);
  p = x2 * p + splat(-2.95459980854025e-03f);
  p = x2 * p + splat(-1.60960333262415e-02f);
  vf q = x2 * splat(-1.45660718464996e-05f) + splat(-2.13374055278905e-04f);
  q = x2 * q + splat(-1.68282697438203e-03f);
  q = x2 * q + splat(-7.37332916720468e-03f);
  q = x2 * q + splat(-1.42647390514189e-02f);
  return x * p * reciprocal(q);
}

constexpr float kSqrtHalf = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2OverPi = 0.79788456080286536f, kCubic = 0.044715f;

// The exact GELU x Phi(x), or the tanh approximation 0.5 x (1 + tanh(u)),
// u = sqrt(2/pi) (x + 0.044715 x^3); with `slope`, also its derivative.
template <bool kApproximate>
inline vf gelu(vf x, vf* slope = nullptr) {
  if (!kApproximate) {
    const vf cdf = splat(0.5f) + splat(0.5f) * verf(x * splat(kSqrtHalf));
    if (slope) *slope = cdf + x * vexp(splat(-0.5f) * x * x) * splat(kInvSqrt2Pi);
    return x * cdf;
  }
  const vf x2 = x * x;
  const vf u = splat(kSqrt2OverPi) * (x + splat(kCubic) * x2 * x);
  // tanh(u) = 1 - 2 / (exp(2u) + 1)
  const vf t = splat(1.0f) - splat(2.0f) * reciprocal(vexp(splat(2.0f) * u) + splat(1.0f));
  const vf cdf = splat(0.5f) + splat(0.5f) * t;
  if (slope)
    *slope = cdf + splat(0.5f) * x * (splat(1.0f) - t * t) * splat(kSqrt2OverPi) *
                       (splat(1.0f) + splat(3.0f * kCubic) * x2);
  return x * cdf;
}

template <bool kApproximate>
void forward_rows(int64_t r0, int64_t r1, int64_t C, const float* z, const float* bias,
                  float* h) {
  for (int64_t i = r0 * C; i < r1 * C; i += C)
    for (int64_t c = 0; c < C; c += kLanes)
      store(h + i + c, gelu<kApproximate>(load(z + i + c) + load(bias + c)));
}

template <bool kApproximate>
void backward_rows(int64_t r0, int64_t r1, int64_t C, const float* z, const float* bias,
                   const float* dh, float* dz, float* dbias) {
  for (int64_t i = r0 * C; i < r1 * C; i += C)
    for (int64_t c = 0; c < C; c += kLanes) {
      vf slope;
      gelu<kApproximate>(load(z + i + c) + load(bias + c), &slope);
      const vf g = load(dh + i + c) * slope;
      store(dz + i + c, g);
      store(dbias + c, load(dbias + c) + g);
    }
}

ffi::Error GeluForward(ffi::ThreadPool pool, Buf z, Buf bias, bool approximate,
                       ffi::ResultBuffer<ffi::F32> h) {
  const int64_t C = bias.element_count(), R = z.element_count() / C;
  if (C % kWidth != 0) return ffi::Error::InvalidArgument("gelu: width must be a multiple of 16");
  const float *zs = z.typed_data(), *b = bias.typed_data();
  float* hs = h->typed_data();
  parallel_rows(pool, R, [=](int64_t r0, int64_t r1) {
    (approximate ? forward_rows<true> : forward_rows<false>)(r0, r1, C, zs, b, hs);
  });
  return ffi::Error::Success();
}

ffi::Error GeluBackward(ffi::ThreadPool pool, Buf z, Buf bias, Buf dh, bool approximate,
                        ffi::ResultBuffer<ffi::F32> dz, ffi::ResultBuffer<ffi::F32> dbias) {
  const int64_t C = bias.element_count(), R = z.element_count() / C;
  if (C % kWidth != 0) return ffi::Error::InvalidArgument("gelu: width must be a multiple of 16");
  const float *zs = z.typed_data(), *b = bias.typed_data(), *dhs = dh.typed_data();
  float* dzs = dz->typed_data();
  parallel_rows_summed(pool, R, C, dbias->typed_data(), [=](int64_t r0, int64_t r1, float* db) {
    (approximate ? backward_rows<true> : backward_rows<false>)(r0, r1, C, zs, b, dhs, dzs, db);
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace vit

using vit::Buf;

XLA_FFI_DEFINE_HANDLER_SYMBOL(VitGeluForward, vit::GeluForward,
                              vit::threaded_binding().Arg<Buf>().Arg<Buf>()
                                  .Attr<bool>("approximate").Ret<Buf>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(VitGeluBackward, vit::GeluBackward,
                              vit::threaded_binding().Arg<Buf>().Arg<Buf>()
                                  .Arg<Buf>().Attr<bool>("approximate").Ret<Buf>().Ret<Buf>());
