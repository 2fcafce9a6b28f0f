// FGDF upsampling in one pass per frame (inference, CPU; x4, x2 and x1).
//
// ops/dynamic_filter.py's PyTorch forms make several passes over a frame: at x4, every pixel's
// k x k window copied out and one batched product; at x2 and x1, where one grid cell's kernels serve
// u x u input pixels, one multiply-add over the kernel grid per (sub-pixel, tap) pair (400 per frame
// at x1), each after a strided copy of a kernel plane out of the channels-last logits, with a box
// filter and permutes around them. Here an output row is done in one go, 16 output pixels to a
// register: for each tap, the 16 pixels' kernel values (gathered from the row's kernels, converted
// to fp32 once) times the 16 frame values they weigh (one load from a replicate-padded band of frame
// rows made once per row of cells, spread over the s sub-pixels of each frame pixel).
//
// The sums, over all T frames and k x k taps, in fp32 and in the output's own layout:
//   acc[c, r, q]  += sum_j K[r, q, j] * P[c, r, q, j]   (P: the k x k window of the output pixel's frame pixel)
//   ksum[r, q]    += sum_j K[r, q, j]
//   psum[c, r, q] += sum_j P[c, r, q, j]
// and the last frame's call applies the normalisation K - mean(K) + 1/(T k k) (linear, so it can
// come last): acc + psum * (1 - ksum) / (T k k). The order of the sums differs from PyTorch's, so
// the results agree to rounding, not bit for bit.

#include "common.h"

namespace {

using vsrdb::run_in_parallel;

// n values, fp32 or bf16, to fp32.
template <typename scalar_t>
inline void to_float(const scalar_t* src, float* dst, int64_t n) {
  int64_t e = 0;
#ifdef __AVX512BW__
  for (; e + 16 <= n; e += 16) _mm512_storeu_ps(dst + e, vsrdb::load16(src + e, 0xFFFF));
#endif
  for (; e < n; ++e) dst[e] = static_cast<float>(src[e]);
}

constexpr int64_t kLanes = 16;

// One frame's sums, output row by output row. Output row (g*u + y)*s + i, column Q = (q*u + x)*s + j
// takes grid cell (g, q)'s sub-pixel kernel sub = ((y*s + i)*u + x)*s + j, centred on frame pixel
// (g*u + y, Q / s). For fixed (g, y, i) those subs are one run of u*s*k*k channels of each cell, so
// the row's kernels, cell after cell, are kbuf[Q * k*k + tap].
// CHANNELS is a compile-time constant so that the per-channel sums stay in registers.
template <int CHANNELS, typename frame_t, typename logit_t>
void accumulate(const frame_t* frame, const int64_t* fs, const logit_t* logits, const int64_t* ls, float* acc,
                float* ksum, float* psum, int64_t batch, int64_t gh, int64_t gw, int64_t u, int64_t scale,
                int64_t ks, bool first, int64_t n) {
  constexpr int64_t channels = CHANNELS;
  const bool last = n > 0;
  const float inv_n = last ? 1.0f / static_cast<float>(n) : 0.0f;
  const int64_t kk = ks * ks, pad = ks / 2, span = u - 1 + ks, run = u * scale * kk;
  const int64_t hi = gh * u, wi = gw * u, band_w = wi + 2 * pad, oh = hi * scale, ow = wi * scale;
  run_in_parallel(batch * gh, [&](int64_t begin, int64_t end) {
    // The span frame rows a row of cells reads, every channel, replicate-padded, in fp32; one more
    // register's width of zeros so that a whole-register load at a row's end stays inside.
    std::vector<float> band(static_cast<size_t>(channels * span * band_w + kLanes));
    std::vector<float> kbuf(static_cast<size_t>(ow * kk + kLanes));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / gh, g = row % gh;
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t r = 0; r < span; ++r) {
          const int64_t y = std::min(std::max(g * u - pad + r, int64_t{0}), hi - 1);
          const frame_t* src = frame + b * fs[0] + c * fs[1] + y * fs[2];
          float* dst = band.data() + (c * span + r) * band_w;
          if (fs[3] == 1) {
            to_float(src, dst + pad, wi);
          } else {
            for (int64_t x = 0; x < wi; ++x) dst[pad + x] = static_cast<float>(src[x * fs[3]]);
          }
          for (int64_t x = 0; x < pad; ++x) {
            dst[x] = dst[pad];
            dst[pad + wi + x] = dst[pad + wi - 1];
          }
        }
      }
      for (int64_t y = 0; y < u; ++y) {
        for (int64_t i = 0; i < scale; ++i) {
          const int64_t orow = (g * u + y) * scale + i;
          const logit_t* k_row = logits + b * ls[0] + g * ls[2] + (y * scale + i) * run * ls[1];
          for (int64_t q = 0; q < gw; ++q) {
            to_float(k_row + q * ls[3], kbuf.data() + q * run, run);  // channels-last: ls[1] == 1
          }
          float* acc_row = acc + (b * channels * oh + orow) * ow;  // channel c at + c * oh * ow
          float* psum_row = psum + (b * channels * oh + orow) * ow;
          float* ksum_row = ksum + (b * oh + orow) * ow;
          const float* band_row = band.data() + y * band_w;  // window row dy of channel c at + (c * span + dy) * band_w
#ifdef __AVX512F__
          for (int64_t q0 = 0; q0 < ow; q0 += kLanes) {
            const int64_t lanes = std::min(kLanes, ow - q0);
            const __mmask16 live = static_cast<__mmask16>((1u << lanes) - 1u);
            const int64_t x0 = q0 / scale;  // the first lane's frame column
            alignas(64) int32_t kidx[kLanes], spread[kLanes];
            for (int64_t l = 0; l < kLanes; ++l) {
              const int64_t q = q0 + std::min(l, lanes - 1);
              kidx[l] = static_cast<int32_t>((q - q0) * kk);
              spread[l] = static_cast<int32_t>(q / scale - x0);  // lane l's frame column, from x0
            }
            const __m512i k_at = _mm512_load_si512(kidx), s_at = _mm512_load_si512(spread);
            const float* k0 = kbuf.data() + q0 * kk;
            __m512 a[CHANNELS], p[CHANNELS], kt = _mm512_setzero_ps();
            for (int64_t c = 0; c < channels; ++c) a[c] = p[c] = _mm512_setzero_ps();
            for (int64_t dy = 0; dy < ks; ++dy) {
              for (int64_t dx = 0; dx < ks; ++dx) {
                const __m512 kv = _mm512_i32gather_ps(k_at, k0 + dy * ks + dx, 4);
                kt = _mm512_add_ps(kt, kv);
                for (int64_t c = 0; c < channels; ++c) {
                  const float* w = band_row + (c * span + dy) * band_w + x0 + dx;
                  __m512 v = _mm512_loadu_ps(w);  // inside the band or its zero tail (see band)
                  if (scale > 1) v = _mm512_permutexvar_ps(s_at, v);
                  a[c] = _mm512_fmadd_ps(kv, v, a[c]);
                  p[c] = _mm512_add_ps(p[c], v);
                }
              }
            }
            if (!first) kt = _mm512_add_ps(_mm512_maskz_loadu_ps(live, ksum_row + q0), kt);
            const __m512 weight = _mm512_mul_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), kt), _mm512_set1_ps(inv_n));
            if (!last) _mm512_mask_storeu_ps(ksum_row + q0, live, kt);
            for (int64_t c = 0; c < channels; ++c) {
              float* ac = acc_row + c * oh * ow + q0;
              float* pc = psum_row + c * oh * ow + q0;
              if (!first) {
                a[c] = _mm512_add_ps(_mm512_maskz_loadu_ps(live, ac), a[c]);
                p[c] = _mm512_add_ps(_mm512_maskz_loadu_ps(live, pc), p[c]);
              }
              if (last) {
                _mm512_mask_storeu_ps(ac, live, _mm512_fmadd_ps(p[c], weight, a[c]));
              } else {
                _mm512_mask_storeu_ps(ac, live, a[c]);
                _mm512_mask_storeu_ps(pc, live, p[c]);
              }
            }
          }
#else
          for (int64_t q = 0; q < ow; ++q) {
            const float* k = kbuf.data() + q * kk;
            float kt = 0.0f;
            for (int64_t j = 0; j < kk; ++j) kt += k[j];
            if (!first) kt += ksum_row[q];
            if (!last) ksum_row[q] = kt;
            for (int64_t c = 0; c < channels; ++c) {
              const float* w = band_row + c * span * band_w + q / scale;
              float a = 0.0f, p = 0.0f;
              for (int64_t dy = 0; dy < ks; ++dy) {
                for (int64_t dx = 0; dx < ks; ++dx) {
                  a += k[dy * ks + dx] * w[dy * band_w + dx];
                  p += w[dy * band_w + dx];
                }
              }
              if (!first) {
                a += acc_row[c * oh * ow + q];
                p += psum_row[c * oh * ow + q];
              }
              acc_row[c * oh * ow + q] = last ? a + p * ((1.0f - kt) * inv_n) : a;
              if (!last) psum_row[c * oh * ow + q] = p;
            }
          }
#endif
        }
      }
    }
  });
}

template <int CHANNELS, typename frame_t>
void accumulate_frame(const at::Tensor& frame, const at::Tensor& logits, float* acc, float* ksum, float* psum,
                      int64_t u, int64_t scale, int64_t ks, bool first, int64_t n) {
  const int64_t b = frame.size(0), gh = logits.size(2), gw = logits.size(3);
  if (logits.scalar_type() == at::kFloat) {
    accumulate<CHANNELS>(frame.data_ptr<frame_t>(), frame.strides().data(), logits.data_ptr<float>(),
                         logits.strides().data(), acc, ksum, psum, b, gh, gw, u, scale, ks, first, n);
  } else {
    accumulate<CHANNELS>(frame.data_ptr<frame_t>(), frame.strides().data(), logits.data_ptr<at::BFloat16>(),
                         logits.strides().data(), acc, ksum, psum, b, gh, gw, u, scale, ks, first, n);
  }
}

template <typename frame_t>
void accumulate_any(const at::Tensor& frame, const at::Tensor& logits, float* acc, float* ksum, float* psum,
                    int64_t u, int64_t scale, int64_t ks, bool first, int64_t n) {
  switch (frame.size(1)) {
    case 1: return accumulate_frame<1, frame_t>(frame, logits, acc, ksum, psum, u, scale, ks, first, n);
    case 2: return accumulate_frame<2, frame_t>(frame, logits, acc, ksum, psum, u, scale, ks, first, n);
    case 3: return accumulate_frame<3, frame_t>(frame, logits, acc, ksum, psum, u, scale, ks, first, n);
    default: return accumulate_frame<4, frame_t>(frame, logits, acc, ksum, psum, u, scale, ks, first, n);
  }
}

}  // namespace

// frame [B, C, u*h, u*w] fp32 or bf16 (any strides); logits [B, (u*s)^2 * k*k, h, w] fp32 or bf16,
// channels-last; acc and psum [B, C, u*s*h, u*s*w] and ksum [B, u*s*h, u*s*w]: fp32, contiguous.
// The first frame's call (first) writes the sums, later ones add to them; the last frame's (n > 0,
// the number of taps over all frames, T*k*k) writes the normalised output into acc instead.
void fgdf_taps_accumulate(const at::Tensor& frame, const at::Tensor& logits, at::Tensor& acc,
                          at::Tensor& ksum, at::Tensor& psum, int64_t u, int64_t scale, bool first, int64_t n) {
  TORCH_CHECK(frame.dim() == 4 && logits.dim() == 4 && frame.device().is_cpu() && logits.device().is_cpu(),
              "fgdf_taps_accumulate: frame and logits must be 4-d CPU tensors");
  TORCH_CHECK(frame.scalar_type() == at::kFloat || frame.scalar_type() == at::kBFloat16,
              "fgdf_taps_accumulate: frame must be fp32 or bf16");
  TORCH_CHECK((logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kBFloat16) &&
                  logits.is_contiguous(at::MemoryFormat::ChannelsLast),
              "fgdf_taps_accumulate: logits must be channels-last fp32 or bf16");
  const int64_t b = frame.size(0), c = frame.size(1), gh = logits.size(2), gw = logits.size(3);
  const int64_t subs = u * u * scale * scale;
  TORCH_CHECK(u >= 1 && scale >= 1 && c >= 1 && c <= 4 && logits.size(0) == b && frame.size(2) == gh * u &&
                  frame.size(3) == gw * u && logits.size(1) % subs == 0,
              "fgdf_taps_accumulate: shapes do not match (or more than 4 channels)");
  const int64_t kk = logits.size(1) / subs;
  int64_t ks = 1;
  while (ks * ks < kk) ++ks;
  TORCH_CHECK(ks * ks == kk && ks % 2 == 1, "fgdf_taps_accumulate: kernels must be k x k with k odd");
  const int64_t oh = gh * u * scale, ow = gw * u * scale;
  for (const at::Tensor* t : {&acc, &ksum, &psum})
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->device().is_cpu(),
                "fgdf_taps_accumulate: acc, ksum and psum must be contiguous fp32 CPU tensors");
  TORCH_CHECK(acc.numel() == b * c * oh * ow && psum.numel() == b * c * oh * ow && ksum.numel() == b * oh * ow,
              "fgdf_taps_accumulate: acc, ksum or psum has the wrong size");
  if (frame.scalar_type() == at::kFloat) {
    accumulate_any<float>(frame, logits, acc.data_ptr<float>(), ksum.data_ptr<float>(), psum.data_ptr<float>(), u,
                          scale, ks, first, n);
  } else {
    accumulate_any<at::BFloat16>(frame, logits, acc.data_ptr<float>(), ksum.data_ptr<float>(),
                                 psum.data_ptr<float>(), u, scale, ks, first, n);
  }
}
