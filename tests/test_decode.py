"""decode_image on bad inputs: empty, non-image, missing, truncated, CMYK / 16-bit / palette /
alpha / grey, EXIF rotation, tiny images, decompression bombs."""
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from adapt.data import BadImage, decode_image
from tests.test_pools import _png, _noise

# ---------------------------------------------------------------- decode_image


def test_decode_rejects_empty_non_image_and_missing(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello, I am not a JPEG\n")
    with pytest.raises(BadImage, match="empty file"):
        decode_image(tmp_path / "empty.jpg")
    with pytest.raises(BadImage, match="not an image"):
        decode_image(tmp_path / "text.jpg")
    with pytest.raises(BadImage, match="cannot read"):
        decode_image(tmp_path / "nope.png")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decode_detects_truncation(tmp_path, fmt):
    b = io.BytesIO()
    _noise(64, 64).save(b, fmt)
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(b.getvalue()[: len(b.getvalue()) // 2])
    with pytest.raises(BadImage, match="truncated"):
        decode_image(p)


def test_decode_cmyk_16bit_palette_alpha_grey(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    px = np.asarray(decode_image(tmp_path / "cmyk.jpg"))[4, 4].astype(int)
    assert np.abs(px - [255, 0, 0]).max() <= 8, px

    a16 = np.array([[0, 1000, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = np.asarray(decode_image(tmp_path / "g16.png"))
    assert out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 4, 100, 255])  # scaled, not clipped

    pal = Image.new("P", (4, 2))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "pal.png", transparency=0)
    out = np.asarray(decode_image(tmp_path / "pal.png"))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (0, 255, 0)

    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 1] = (255, 0, 0, 255)
    rgba[0, 2] = (0, 0, 255, 128)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(decode_image(tmp_path / "rgba.png")).astype(int)
    assert tuple(out[0, 0]) == (255, 255, 255)  # transparent -> white
    assert tuple(out[0, 1]) == (255, 0, 0)
    assert abs(out[0, 2, 0] - 127) <= 1 and out[0, 2, 2] == 255

    Image.new("L", (3, 2), 77).save(tmp_path / "grey.png")
    img = decode_image((tmp_path / "grey.png").read_bytes())
    assert img.mode == "RGB" and np.all(np.asarray(img) == 77)
    inv = decode_image(tmp_path / "grey.png", invert=True)
    assert np.all(np.asarray(inv) == 255 - 77)


def test_decode_exif_rotation_and_tiny(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    img = decode_image(tmp_path / "rot.jpg")
    assert img.size == (20, 40)  # (W, H) swapped
    out = np.asarray(img).astype(int)
    assert out[2, 10, 0] > 200 and out[2, 10, 2] < 60  # stored left half (red) is now on top
    assert out[37, 10, 2] > 200 and out[37, 10, 0] < 60

    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "one.png")
    img = decode_image(tmp_path / "one.png")
    assert img.size == (1, 1) and img.getpixel((0, 0)) == (1, 2, 3)


def test_decode_decompression_bomb(tmp_path, monkeypatch):
    big = _png(Image.new("RGB", (20, 20)))  # 400 pixels: above 2x the limit -> PIL error
    mid = _png(Image.new("RGB", (12, 12)))  # 144 pixels: above the limit -> PIL warning
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(BadImage, match="too large"):
        decode_image(big)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(BadImage, match="too large"):
            decode_image(mid)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(BadImage, match="too large"):
            decode_image(mid)
    assert Image.MAX_IMAGE_PIXELS == 100  # we never change PIL's limit
    monkeypatch.undo()
    assert decode_image(big).size == (20, 20)
