"""Malformed and awkward image files: the image half of the safety corpus.

    python tests/image_corpus.py OUT_DIR
"""

from __future__ import annotations

import io
import random
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def cases(seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes): at least 50 files, each either a valid odd image or a broken one."""
    from PIL import Image

    rng = random.Random(seed)
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    for x in range(64):
        img.putpixel((x, x % 48), (0, 0, 255))
    encoded = {}
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tif"),
                     ("WEBP", "webp")):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        encoded[ext] = buf.getvalue()
    for ext, data in encoded.items():
        for frac in (0.0, 0.1, 0.3, 0.5, 0.9):
            yield f"truncated-{int(frac * 100)}.{ext}", data[: int(len(data) * frac)]
        for i in range(3):
            bad = bytearray(data)
            for _ in range(8):
                bad[rng.randrange(len(bad))] = rng.randrange(256)
            yield f"garbled-{i}.{ext}", bytes(bad)
    yield "png-named.jpg", encoded["png"]
    yield "text.png", b"this is not an image\n"
    yield "empty.png", b""
    yield "random.jpg", bytes(rng.randrange(256) for _ in range(2048))
    yield "huge-dimensions.png", _png_header_only(100_000, 100_000)
    yield "bomb.png", _png_header_only(30_000, 30_000)
    yield "zero-size.png", _png_header_only(0, 0)
    frames = [Image.new("RGB", (32, 32), (i * 40, 0, 0)) for i in range(4)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    yield "animated.gif", buf.getvalue()
    buf = io.BytesIO()
    Image.new("I;16", (40, 30), 40000).save(buf, format="PNG")
    yield "16-bit.png", buf.getvalue()
    buf = io.BytesIO()
    Image.new("RGBA", (40, 30), (0, 255, 0, 0)).save(buf, format="PNG")
    yield "transparent.png", buf.getvalue()
    buf = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 0, 0)).save(buf, format="JPEG")
    yield "cmyk.jpg", buf.getvalue()
    buf = io.BytesIO()
    Image.new("P", (40, 30), 3).save(buf, format="PNG")
    yield "palette.png", buf.getvalue()
    yield "1x1.png", _png_chunkless_1x1()


def _png_chunkless_1x1() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1), 128).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "image-corpus")
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, data in cases():
        (out / name).write_bytes(data)
        n += 1
    print(f"{n} image files in {out}")


if __name__ == "__main__":
    main()
