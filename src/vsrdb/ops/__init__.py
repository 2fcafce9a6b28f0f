"""Pure tensor functions: warping and dynamic filtering."""

from .dynamic_filter import (dynamic_downsample, dynamic_upsample, normalize_downsampling_kernels,
                             normalize_upsampling_kernels)
from .warp import flow_warp, image_flow_warp, multi_flow_warp

__all__ = ["flow_warp", "multi_flow_warp", "image_flow_warp", "dynamic_downsample", "dynamic_upsample",
           "normalize_downsampling_kernels", "normalize_upsampling_kernels"]
