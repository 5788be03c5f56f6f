import numpy as np
import pytest
from conftest import write_image
from PIL import Image

from engage.errors import ImageReadError
from engage.io.images import as_rgb_image, read_image, to_rgb


@pytest.mark.parametrize("extension", [".jpg", ".png", ".bmp", ".webp", ".tif"])
def test_reads_common_formats_as_rgb_uint8(tmp_path, astronaut, extension):
    path = write_image(tmp_path / f"face{extension}", astronaut)
    image = read_image(path)
    assert image.shape == astronaut.shape and image.dtype == np.uint8
    assert np.abs(image.astype(int) - astronaut).mean() < 8  # lossy formats stay close


def test_gray_rgba_and_16bit(tmp_path, astronaut):
    gray = astronaut.mean(axis=2).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").shape == (512, 512, 3)

    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # transparent corner composited over white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (512, 512, 3) and (image[:10, :10] == 255).all()
    assert np.array_equal(image[20:, 20:], astronaut[20:, 20:])

    sixteen = gray.astype(np.uint16) * 257
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert np.abs(image[:, :, 0].astype(int) - gray).max() <= 1


def test_exif_orientation_is_honoured(tmp_path, astronaut):
    wide = astronaut[:200]  # 200 x 512, stored landscape, EXIF says rotate 90 degrees
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "rotated.jpg").shape == (512, 200, 3)


def test_bad_files_raise_naming_the_file(tmp_path, astronaut):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    full = write_image(tmp_path / "full.jpg", astronaut)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(full.read_bytes()[:3000])
    for path, words in [
        (empty, "empty"),
        (text, "not an image"),
        (truncated, "truncated"),
        (tmp_path / "missing.jpg", "cannot open"),
        (tmp_path, "folder"),
    ]:
        with pytest.raises(ImageReadError) as caught:
            read_image(path)
        assert str(path) in str(caught.value) and words in str(caught.value)


def test_arrays_and_pil_images(astronaut):
    assert as_rgb_image(Image.fromarray(astronaut)).shape == (512, 512, 3)
    assert to_rgb(astronaut[:, :, 0]).shape == (512, 512, 3)
    assert to_rgb(np.ones((4, 4), np.float32)).max() == 255
    with pytest.raises(ValueError):
        to_rgb(np.zeros((4, 4, 5), np.uint8))


def decompression_bomb(path, side: int = 30000):
    """A 30000x30000 PNG of a few hundred bytes: an IHDR that claims 900 M pixels, over a zlib stream of zeros."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit gray
    rows = zlib.compress(b"\0" * (side * (1 + side // 8)), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_refused_in_one_line_before_it_is_decoded(tmp_path):
    from conftest import assert_one_line_error, run_cli

    bomb = decompression_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageReadError, match="too many pixels to read safely"):
        read_image(bomb)
    result = run_cli("predict", str(bomb))
    assert_one_line_error(result, "bomb.png", "too many pixels")
