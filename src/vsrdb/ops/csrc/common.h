// What vsrdb's CPU kernels share: the thread split and AVX-512 loads and stores of fp32 or bf16.
#pragma once

// ATen's tensor and thread headers only: torch/extension.h (pybind11, the whole C++ API) is for
// module.cpp, and each file that includes it takes about 20 s more to compile.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>

#ifdef __AVX512BW__
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace vsrdb {

// Rows split among torch's intra-op thread count. Plain threads, not at::parallel_for: that is
// OpenMP inlined from the headers, which would tie this library to an OpenMP runtime of its own
// beside torch's. A thread costs tens of microseconds; a call, milliseconds.
template <typename F>
void run_in_parallel(int64_t rows, const F& work) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(work, rows * t / threads, rows * (t + 1) / threads);
  work(0, rows / threads);
  for (auto& th : pool) th.join();
}

#ifdef __AVX512BW__
// Up to 16 values, fp32 or bf16, as one fp32 register (masked to the first lanes), and back.
inline __m512 load16(const float* p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); }
inline __m512 load16(const at::BFloat16* p, __mmask16 k) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
inline void store16(float* p, __mmask16 k, __m512 v) { _mm512_mask_storeu_ps(p, k, v); }
inline void store16(at::BFloat16* p, __mmask16 k, __m512 v) {
  // Round to nearest even, NaN to the quiet NaN: c10::BFloat16's own conversion.
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, k, _mm512_cvtepi32_epi16(r));
}

#endif

}  // namespace vsrdb
