// The Python module of vsrdb's CPU kernels (ops/kernels.py loads it); each kernel's file says what it does.

#include <torch/extension.h>

torch::Tensor multi_flow_warp(const torch::Tensor& frames, const torch::Tensor& flow_mask, int64_t groups);
void fgdf_taps_accumulate(const torch::Tensor& frame, const torch::Tensor& logits, torch::Tensor& acc,
                          torch::Tensor& ksum, torch::Tensor& psum, int64_t u, int64_t scale, bool first, int64_t n);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("multi_flow_warp", &multi_flow_warp, "multi-flow-mask warp of channels-last frames");
  m.def("fgdf_taps_accumulate", &fgdf_taps_accumulate, "one frame's FGDF upsampling sums, or the output from the last");
}
