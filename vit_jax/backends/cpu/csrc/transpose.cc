// A float32 matrix transpose for XLA:CPU as an FFI custom call: the copy of
// x that a dense layer's weight gradient x^T dy reads (XLA:CPU's own
// transposes of these shapes are slower; vit_jax/backends/cpu/kernels.py).
#include "vec.h"

namespace vit {
namespace {

// out[C x R] = in[R x C]^T, a band of 16 input columns per task, in 16 x 16
// blocks; the edges element by element.
ffi::Error Transpose(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> in,
                     ffi::ResultBuffer<ffi::F32> out) {
  auto dims = in.dimensions();
  if (dims.size() != 2) return ffi::Error::InvalidArgument("transpose: a matrix is expected");
  const int64_t R = dims[0], C = dims[1];
  const float* src = in.typed_data();
  float* dst = out->typed_data();
  parallel_for(pool, int((C + kLanes - 1) / kLanes), [=](int band) {
    const int64_t c0 = int64_t{band} * kLanes, c1 = std::min(C, c0 + kLanes);
    int64_t r0 = 0;
    if (c1 - c0 == kLanes)
      for (; r0 + kLanes <= R; r0 += kLanes)
        transpose_block(src + r0 * C + c0, C, dst + c0 * R + r0, R);
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t r = r0; r < R; ++r) dst[c * R + r] = src[r * C + c];
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace vit

using vit::Buf;

XLA_FFI_DEFINE_HANDLER_SYMBOL(VitTranspose, vit::Transpose,
                              vit::threaded_binding().Arg<Buf>().Ret<Buf>());
