"""Video in and out: the layer below restore, serve and evaluate (training data lives in ``data``).

- ``containers``: what is read and written by file name, and output-path checks;
- ``colour``: matrix, range, primaries, transfer and HDR metadata, kept from input to output;
- ``frames``: frames as arrays and tensors, image files, the ``FrameSource`` interface;
- ``decode``: video files and frame folders as frame sources;
- ``encode``: output formats, segment encoders, the join, and simple writers;
- ``y4m``: YUV4MPEG2 streams on pipes, in and out.

Decoding and encoding do not import each other; both build on ``frames`` and ``colour``.
"""

from .colour import ColourSpec, HdrMetadata, describe
from .containers import (
    DEFAULT_FPS,
    IMAGE_EXTENSIONS,
    MAX_FPS,
    MIN_FPS,
    OUTPUT_CONTAINERS,
    VIDEO_EXTENSIONS,
    check_output_path,
    check_writable_folder,
    list_frames,
    natural_key,
    not_a_file,
)
from .decode import FolderSource, VideoSource, open_frames
from .encode import (
    CODECS,
    FrameWriter,
    OutputFormat,
    PNGFolderWriter,
    VideoEncoder,
    VideoWriter,
    choose_format,
    encoder_frame,
    join_segments,
    open_writer,
    set_display_rotation,
)
from .frames import SRGB, FrameSource, read_image, to_array, to_tensor

__all__ = ["ColourSpec", "HdrMetadata", "describe", "DEFAULT_FPS", "IMAGE_EXTENSIONS", "MAX_FPS", "MIN_FPS",
           "OUTPUT_CONTAINERS", "VIDEO_EXTENSIONS", "check_output_path", "check_writable_folder", "list_frames",
           "natural_key", "not_a_file", "FolderSource", "VideoSource", "open_frames", "CODECS", "FrameWriter",
           "OutputFormat", "PNGFolderWriter", "VideoEncoder", "VideoWriter", "choose_format", "encoder_frame",
           "join_segments", "open_writer", "set_display_rotation", "SRGB", "FrameSource", "read_image", "to_array",
           "to_tensor"]
