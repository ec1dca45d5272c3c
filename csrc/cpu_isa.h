// Run-time choice of the instruction set for CPU hot loops: the same source compiled twice, for
// AVX2 + FMA and for the portable baseline, so that wheels built for any x86-64 run everywhere
// and use AVX2 where the CPU has it.
#pragma once

#include "common.h"

namespace wsls {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WSLS_HAVE_AVX2_DISPATCH 1

inline bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

template <typename F>
__attribute__((target("avx2,fma"), noinline)) void run_avx2_fma(const F& f) {
  f();
}
#endif

// Runs f() in its AVX2 + FMA build where the CPU has them, else in the portable build. Write f as
// an always-inline lambda (WSLS_INLINE_LAMBDA) calling WSLS_ALWAYS_INLINE functions, so that the
// whole loop nest is compiled into each variant.
template <typename F>
void run_with_best_isa(const F& f) {
#ifdef WSLS_HAVE_AVX2_DISPATCH
  if (cpu_has_avx2_fma()) {
    run_avx2_fma(f);
    return;
  }
#endif
  f();
}

}  // namespace wsls
