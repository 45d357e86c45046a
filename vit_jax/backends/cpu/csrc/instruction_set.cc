// The instruction set the library was built for (-march=native), which
// kernels.py's instruction_set() reads: which kernels beat XLA:CPU depends
// on it (vit_jax/backends/cpu/choice.py).
#include "vec.h"

extern "C" const char* VitInstructionSet() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2";
#elif defined(__x86_64__)
  return "x86-64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "other";
#endif
}
