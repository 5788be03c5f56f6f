"""Input and output: reading images and videos, finding what the user pointed at, the bundled sample photos, and
files that are never half-written. Knows nothing of faces, data sets or models."""

from typing import TYPE_CHECKING

from engage.lazy import attach

if TYPE_CHECKING:
    from engage.io.files import StagedFile, atomic_write, walk_files, write_bytes, write_text
    from engage.io.images import as_rgb_image, is_image_file, read_image, read_image_bytes, to_rgb
    from engage.io.inputs import InputItem, Inputs, expand_inputs
    from engage.io.sample_photos import sample_images
    from engage.io.video import Frame, Mp4Writer, VideoSource, is_video_file, write_video

__getattr__, __dir__, __all__ = attach(__name__, __file__)
