"""Pure tensor functions: warping, dynamic filtering, cost volumes, windowed attention."""

from .attention import window_attention
from .cost_volume import l1_cost_volume
from .dynamic_filter import (
    dynamic_downsample,
    dynamic_upsample,
    normalize_downsampling_kernels,
    normalize_upsampling_kernels,
)
from .warp import flow_warp, image_flow_warp, multi_flow_warp, resize_flow

__all__ = ["flow_warp", "multi_flow_warp", "image_flow_warp", "resize_flow", "dynamic_downsample",
           "dynamic_upsample", "normalize_downsampling_kernels", "normalize_upsampling_kernels",
           "l1_cost_volume", "window_attention"]
