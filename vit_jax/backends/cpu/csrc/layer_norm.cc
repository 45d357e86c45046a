// LayerNorm for XLA:CPU as FFI custom calls (float32), forward and backward:
// one pass over the rows each way, where XLA:CPU's LayerNorm and its
// gradient take four times as long (vit_jax/cpu_kernels.py).
#include <cmath>
#include <vector>

#include "vec.h"

namespace vit {
namespace {

// y = (x - mean) rstd scale + bias over rows of x[R x C], C % 16 == 0, with
// mean and rstd = 1 / sqrt(var + eps) kept for the backward pass; the
// variance in a second pass over the row (in L1), not as E[x^2] - E[x]^2.
ffi::Error LayerNormForward(ffi::ThreadPool pool, Buf x, Buf scale, Buf bias, float eps,
                            ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::F32> mean,
                            ffi::ResultBuffer<ffi::F32> rstd) {
  const int64_t C = scale.element_count(), R = x.element_count() / C;
  if (C % kWidth != 0 || bias.element_count() != C)
    return ffi::Error::InvalidArgument("layer_norm: width must be a multiple of 16");
  const float *xs = x.typed_data(), *g = scale.typed_data(), *b = bias.typed_data();
  float *ys = y->typed_data(), *ms = mean->typed_data(), *rs = rstd->typed_data();
  parallel_rows(pool, R, [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = xs + r * C;
      vf sum = vf{};
      for (int64_t c = 0; c < C; c += kLanes) sum += load(row + c);
      const float mu = hsum(sum) / C;
      vf sq = vf{};
      for (int64_t c = 0; c < C; c += kLanes) { vf d = load(row + c) - splat(mu); sq += d * d; }
      const float inv = 1.0f / std::sqrt(hsum(sq) / C + eps);
      for (int64_t c = 0; c < C; c += kLanes)
        store(ys + r * C + c, (load(row + c) - splat(mu)) * splat(inv) * load(g + c) + load(b + c));
      ms[r] = mu;
      rs[r] = inv;
    }
  });
  return ffi::Error::Success();
}

// dx = rstd (dy scale - mean(dy scale) - xhat mean(dy scale xhat)), dscale =
// the sum over rows of dy xhat, dbias = the sum of dy.
ffi::Error LayerNormBackward(ffi::ThreadPool pool, Buf x, Buf scale, Buf mean, Buf rstd, Buf dy,
                             ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dscale,
                             ffi::ResultBuffer<ffi::F32> dbias) {
  const int64_t C = scale.element_count(), R = x.element_count() / C;
  if (C % kWidth != 0)
    return ffi::Error::InvalidArgument("layer_norm: width must be a multiple of 16");
  const float *xs = x.typed_data(), *g = scale.typed_data(), *ms = mean.typed_data(),
              *rs = rstd.typed_data(), *dys = dy.typed_data();
  float* dxs = dx->typed_data();
  std::vector<float> sums(2 * C);  // dscale, then dbias
  parallel_rows_summed(pool, R, 2 * C, sums.data(), [=](int64_t r0, int64_t r1, float* ds) {
    float* db = ds + C;
    for (int64_t r = r0; r < r1; ++r) {
      const float *row = xs + r * C, *d = dys + r * C;
      const vf mu = splat(ms[r]), inv = splat(rs[r]);
      vf sg = vf{}, sgx = vf{};
      for (int64_t c = 0; c < C; c += kLanes) {
        const vf xh = (load(row + c) - mu) * inv, dyc = load(d + c), gc = dyc * load(g + c);
        sg += gc;
        sgx += gc * xh;
        store(ds + c, load(ds + c) + dyc * xh);
        store(db + c, load(db + c) + dyc);
      }
      const vf a = splat(hsum(sg) / C), bq = splat(hsum(sgx) / C);
      for (int64_t c = 0; c < C; c += kLanes) {
        const vf xh = (load(row + c) - mu) * inv;
        store(dxs + r * C + c, inv * (load(d + c) * load(g + c) - a - xh * bq));
      }
    }
  });
  std::copy(sums.begin(), sums.begin() + C, dscale->typed_data());
  std::copy(sums.begin() + C, sums.end(), dbias->typed_data());
  return ffi::Error::Success();
}

}  // namespace
}  // namespace vit

using vit::Buf;

XLA_FFI_DEFINE_HANDLER_SYMBOL(VitLayerNormForward, vit::LayerNormForward,
                              vit::threaded_binding().Arg<Buf>().Arg<Buf>()
                                  .Arg<Buf>().Attr<float>("eps").Ret<Buf>().Ret<Buf>().Ret<Buf>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(VitLayerNormBackward, vit::LayerNormBackward,
                              vit::threaded_binding().Arg<Buf>().Arg<Buf>()
                                  .Arg<Buf>().Arg<Buf>().Arg<Buf>().Ret<Buf>().Ret<Buf>()
                                  .Ret<Buf>());
