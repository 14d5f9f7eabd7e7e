"""The HTML report opened in headless Chromium: no script errors, complete DOM, a real picture.

Needs Debian's ``chromium`` (``apt-get install -y chromium``; ``make test`` tries to install
it). Skips, saying why, only when no Chromium binary can be found.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_report_fixtures import small_detail, small_measurements, small_plan

from partitioner.report import build_report
from partitioner.report.html import render_html

pytestmark = pytest.mark.browser

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _chromium() -> str:
    for name in (os.environ.get("HETPART_CHROMIUM", ""), *_CANDIDATES):
        if name and shutil.which(name):
            return str(shutil.which(name))
    pytest.skip("headless Chromium not found (install it: apt-get install -y chromium)")


def _browse(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), *_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _unfilter_sequential(kind: int, line: bytes, prev: bytes, bpp: int) -> bytearray:
    """Undo the Average (3) or Paeth (4) filter of one row (pure Python, byte by byte)."""
    row = bytearray(len(line))
    for i, value in enumerate(line):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        if kind == 3:
            row[i] = (value + ((a + b) >> 1)) & 255
            continue
        c = prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        row[i] = (value + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))) & 255
    return row


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG into an (h, w, channels) uint8 array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: running sum per channel
            row = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + prev) % 256
        else:  # Average (3) or Paeth (4): sequential along the row
            row = np.frombuffer(
                _unfilter_sequential(
                    kind, raw[y, 1:].tobytes(), prev.astype(np.uint8).tobytes(), bpp
                ),
                dtype=np.uint8,
            ).astype(np.int32)
        out[y] = row
        prev = row.astype(np.int32)
    return out.reshape(height, width, bpp)


def _filtered(image: np.ndarray, y: int, kind: int) -> bytes:
    """Row ``y`` of ``image`` encoded with PNG filter ``kind`` (the reference definitions)."""
    line = image[y].reshape(-1).astype(np.int32)
    prev = image[y - 1].reshape(-1).astype(np.int32) if y else np.zeros_like(line)
    bpp = image.shape[2]
    left = np.concatenate([np.zeros(bpp, np.int32), line[:-bpp]])
    up_left = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
    if kind == 0:
        pred = np.zeros_like(line)
    elif kind == 1:
        pred = left
    elif kind == 2:
        pred = prev
    elif kind == 3:
        pred = (left + prev) // 2
    else:
        p = left + prev - up_left
        pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - up_left)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
    return bytes([kind]) + ((line - pred) % 256).astype(np.uint8).tobytes()


def test_decode_png_round_trip(tmp_path: Path) -> None:
    """The decoder against a PNG written by hand with every filter type."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    rows = b"".join(_filtered(image, y, kind) for y, kind in enumerate((0, 1, 2, 3, 4)))
    chunk = lambda kind, body: (  # noqa: E731
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    )
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 5, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    assert np.array_equal(decode_png(png), image)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _chromium()
    root = tmp_path_factory.mktemp("browser")
    path = root / "report.html"
    report = build_report(small_plan(), small_measurements(), small_detail())
    path.write_text(render_html(report), encoding="utf-8")
    return path


def test_report_renders_without_errors_and_shows_everything(page: Path, tmp_path: Path) -> None:
    result = _browse(tmp_path, page, "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # no console messages (errors, CSP violations)
    dom = result.stdout
    assert 'data-ready="yes"' in dom, "the inline script did not run to the end"
    assert '<div id="js-errors"></div>' in dom, "script errors were reported in the page"
    for device in ("cpu", "gpu", "npu"):
        assert f"</span>{device}" in dom
    for index in range(3):
        assert f">p{index}</td>" in dom
    assert "tiny-attn on test-trio" in dom


def test_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    result = _browse(tmp_path, page, f"--screenshot={shot}", "--window-size=1400,2000")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = decode_png(shot.read_bytes())[..., :3].astype(np.float64)
    assert pixels.shape[:2] == (2000, 1400)
    assert pixels.std() > 20.0  # text, bars and charts, not a uniform page
    coloured = np.abs(pixels - pixels.mean(axis=2, keepdims=True)).max(axis=2) > 40
    assert coloured.mean() > 0.005  # device colours are visible (bars, chips, graph)
