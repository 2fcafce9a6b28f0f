// Multi-flow-mask warping of channels-last frames in one pass (inference, CPU).
//
// ops/warp.py's PyTorch form runs, per frame, grid_sample on each channel group, a multiply by the
// sigmoid of the mask and a copy into the channels-last output: three passes over the frame and a
// grid tensor. Here each output pixel reads its flow triple once per group, computes the four
// bilinear weights once and applies them to the group's channels, which lie next to each other in
// a channels-last frame. The arithmetic repeats grid_sample's (align_corners=True, zero padding):
// the same normalised coordinate and back, the same weights and the same order of sums, so the
// result equals the PyTorch form's to rounding (built with -ffp-contract=off for that reason).

#include "common.h"

#include <ATen/ops/empty_like.h>

#include <cmath>

namespace {

using vsrdb::run_in_parallel;
#ifdef __AVX512BW__
using vsrdb::load16;
using vsrdb::store16;
#endif

// One output pixel's group: the four corners' weighted sum, times the mask, into o. CG > 0 fixes
// the group's width at compile time (the presets' widths), so the loops unroll.
template <typename scalar_t, int CG>
inline void blend(const scalar_t* const corner[4], const float wts[4], float mask, scalar_t* o, int64_t cg) {
  constexpr int kMax = 64;
  const int64_t len = CG > 0 ? CG : cg;
  float acc[CG > 0 ? CG : kMax];
  for (int64_t c0 = 0; c0 < len; c0 += kMax) {
    const int64_t m = std::min<int64_t>(kMax, len - c0);
    for (int64_t c = 0; c < (CG > 0 ? CG : m); ++c) acc[c] = 0.0f;
    // grid_sample's sum: ((nw + ne) + sw) + se; a padding corner would add 0 * weight.
    for (int k = 0; k < 4; ++k) {
      if (corner[k] == nullptr) continue;
      const scalar_t* v = corner[k] + c0;
      const float wk = wts[k];
      for (int64_t c = 0; c < (CG > 0 ? CG : m); ++c) acc[c] += static_cast<float>(v[c]) * wk;
    }
    for (int64_t c = 0; c < (CG > 0 ? CG : m); ++c) o[c0 + c] = static_cast<scalar_t>(acc[c] * mask);
  }
}

#ifdef __AVX512BW__
// blend for a group of at most 16 channels in one masked AVX-512 register: the same products and
// sums in the same order (separate multiplies and adds), so the same numbers.
template <typename scalar_t>
inline void blend16(const scalar_t* const corner[4], const float wts[4], float mask, scalar_t* o, __mmask16 k) {
  __m512 acc = _mm512_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    if (corner[i] == nullptr) continue;
    acc = _mm512_add_ps(acc, _mm512_mul_ps(load16(corner[i], k), _mm512_set1_ps(wts[i])));
  }
  store16(o, k, _mm512_mul_ps(acc, _mm512_set1_ps(mask)));
}
#endif

template <typename scalar_t, int CG>
void warp_frames(const scalar_t* frames, const float* flow_mask, const int64_t* fm_strides, scalar_t* out,
                 int64_t num_frames, int64_t channels, int64_t height, int64_t width, int64_t groups) {
  const int64_t cg = channels / groups;
  const int64_t plane = height * width;
  // grid_sample's normalisation as ops/warp.py's _flow_grid computes it in fp32 ...
  const float to_grid_x = static_cast<float>(2.0 / static_cast<double>(std::max<int64_t>(width - 1, 1)));
  const float to_grid_y = static_cast<float>(2.0 / static_cast<double>(std::max<int64_t>(height - 1, 1)));
  // ... and its inverse inside grid_sample (align_corners=True): (g + 1) * (size - 1) / 2.
  const float from_grid_x = static_cast<float>(width - 1) / 2.0f;
  const float from_grid_y = static_cast<float>(height - 1) / 2.0f;
  const float far_x = static_cast<float>(width) + 1.0f, far_y = static_cast<float>(height) + 1.0f;

  run_in_parallel(num_frames * height, [&](int64_t begin, int64_t end) {
    std::vector<float> ix(width), iy(width), mask(width);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t f = row / height;
      const int64_t y = row % height;
      const scalar_t* src = frames + f * plane * channels;
      scalar_t* dst = out + (f * plane + y * width) * channels;
      for (int64_t j = 0; j < groups; ++j) {
        const int64_t sc = fm_strides[1], sx = fm_strides[3];
        const float* dx = flow_mask + f * fm_strides[0] + 3 * j * sc + y * fm_strides[2];
        const float* dy = dx + sc;
        const float* logit = dy + sc;
        // A row's positions and masks first, then the samples.
        const float yf = static_cast<float>(y);
        for (int64_t x = 0; x < width; ++x) {
          ix[x] = ((static_cast<float>(x) + dx[x * sx]) * to_grid_x - 1.0f + 1.0f) * from_grid_x;
          iy[x] = ((yf + dy[x * sx]) * to_grid_y - 1.0f + 1.0f) * from_grid_y;
          mask[x] = 1.0f / (1.0f + std::exp(-logit[x * sx]));
        }
        for (int64_t x = 0; x < width; ++x) {
          scalar_t* o = dst + x * channels + j * cg;
          const float px = ix[x], py = iy[x];
          // Far outside (or not a number): every corner is padding. Also keeps the casts in range.
          if (!(px > -2.0f && px < far_x && py > -2.0f && py < far_y)) {
            for (int64_t c = 0; c < cg; ++c) o[c] = static_cast<scalar_t>(0.0f);
            continue;
          }
          const float x0f = std::floor(px), y0f = std::floor(py);
          const float w = px - x0f, e = 1.0f - w;
          const float n = py - y0f, s = 1.0f - n;
          const float wts[4] = {s * e, s * w, n * e, n * w};  // nw, ne, sw, se
          const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
          const scalar_t* corner[4];
          for (int k = 0; k < 4; ++k) {
            const int64_t cx = x0 + (k & 1), cy = y0 + (k >> 1);
            corner[k] = (cx >= 0 && cx < width && cy >= 0 && cy < height)
                            ? src + (cy * width + cx) * channels + j * cg : nullptr;
          }
#ifdef __AVX512BW__
          if (cg <= 16) {
            blend16<scalar_t>(corner, wts, mask[x], o, static_cast<__mmask16>((1u << cg) - 1u));
            continue;
          }
#endif
          blend<scalar_t, CG>(corner, wts, mask[x], o, cg);
        }
      }
    }
  });
}

template <typename scalar_t>
void warp_rows(const scalar_t* frames, const float* flow_mask, const int64_t* fm_strides, scalar_t* out,
               int64_t num_frames, int64_t channels, int64_t height, int64_t width, int64_t groups) {
  switch (channels / groups) {  // the presets' group widths: fmanet-cpu 12, fmanet 10, fmanet-cpu-l 16
    case 10: return warp_frames<scalar_t, 10>(frames, flow_mask, fm_strides, out, num_frames, channels, height, width, groups);
    case 12: return warp_frames<scalar_t, 12>(frames, flow_mask, fm_strides, out, num_frames, channels, height, width, groups);
    case 16: return warp_frames<scalar_t, 16>(frames, flow_mask, fm_strides, out, num_frames, channels, height, width, groups);
    default: return warp_frames<scalar_t, 0>(frames, flow_mask, fm_strides, out, num_frames, channels, height, width, groups);
  }
}

}  // namespace

// frames [N, C, H, W] channels-last, fp32 or bf16; flow_mask [N, 3n, H, W] fp32 (any strides) with n
// triples (dx, dy, mask logit) -> [N, C, H, W] channels-last in the frames' dtype: group j of each
// frame sampled at pixel + (dx, dy) of triple j and multiplied by sigmoid(logit).
at::Tensor multi_flow_warp(const at::Tensor& frames, const at::Tensor& flow_mask, int64_t groups) {
  TORCH_CHECK(frames.dim() == 4 && frames.device().is_cpu() &&
                  frames.is_contiguous(at::MemoryFormat::ChannelsLast),
              "multi_flow_warp: frames must be a channels-last CPU tensor [N, C, H, W]");
  TORCH_CHECK(flow_mask.dim() == 4 && flow_mask.scalar_type() == at::kFloat && flow_mask.device().is_cpu(),
              "multi_flow_warp: flow_mask must be an fp32 CPU tensor [N, 3n, H, W]");
  const int64_t n = frames.size(0), c = frames.size(1), h = frames.size(2), w = frames.size(3);
  TORCH_CHECK(groups > 0 && c % groups == 0 && flow_mask.size(0) == n && flow_mask.size(1) == 3 * groups &&
                  flow_mask.size(2) == h && flow_mask.size(3) == w,
              "multi_flow_warp: shapes do not match");
  auto out = at::empty_like(frames, at::MemoryFormat::ChannelsLast);
  if (frames.scalar_type() == at::kFloat) {
    warp_rows<float>(frames.data_ptr<float>(), flow_mask.data_ptr<float>(), flow_mask.strides().data(),
                     out.data_ptr<float>(), n, c, h, w, groups);
  } else if (frames.scalar_type() == at::kBFloat16) {
    warp_rows<at::BFloat16>(frames.data_ptr<at::BFloat16>(), flow_mask.data_ptr<float>(),
                            flow_mask.strides().data(), out.data_ptr<at::BFloat16>(), n, c, h, w, groups);
  } else {
    TORCH_CHECK(false, "multi_flow_warp: frames must be fp32 or bf16");
  }
  return out;
}
