"""The probe's checks beyond encode and decode: which VAAPI driver a render node has, the
device deinterlacers, and libplacebo (Dolby Vision profile 5 needs a Vulkan device).

Each builds the argv the prober runs; success is still exit status 0 and frames out.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from ..catalog.backends import Backend
from ..catalog.device import Device
from ..media import ffmpeg
from ..media.filters import DOVI_TONEMAP, filter_names

SIZE = (256, 144)
_HEAD = ["-hide_banner", "-v", "error", "-nostats", "-progress", "pipe:1"]
TEST_SOURCE = f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate=25:duration=1"
DECODE_SAMPLES = {  # probe key -> (software encoder args, pixel format)
    "h264": (["-c:v", "libx264", "-preset", "ultrafast"], "yuv420p"),
    "hevc": (["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
             "yuv420p"),
    "hevc_10bit": (["-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
                    "log-level=error"], "yuv420p10le"),
}  # fmt: skip
# a second of interlaced H.264, top field first, as a DVD or 1080i recording has
INTERLACED_SOURCE = f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate=50:duration=1"
PQ_SOURCE = (
    f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate=25:duration=0.2,format=yuv420p10le,"
    "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc"
)
_VA_DRIVER = re.compile(r"VAAPI driver: (.+?)\.?$", re.MULTILINE)


def driver_name(vendor_string: str) -> str | None:
    """iHD, i965 or radeonsi from libva's vendor string (what Jellyfin's vainfo check reads)."""
    for needle, name in (("iHD", "iHD"), ("i965", "i965"), ("radeonsi", "radeonsi")):
        if needle in vendor_string:
            return name
    return "radeonsi" if "Mesa" in vendor_string and "AMD" in vendor_string else None


async def va_driver(binary: str, device: Device, timeout: float) -> str | None:
    """Open the render node through ffmpeg and read which VAAPI driver answered."""
    if device.render_node is None or not device.usable:
        return None
    argv = [binary, "-hide_banner", "-v", "verbose",
            "-init_hw_device", f"vaapi=va:{device.render_node}",
            "-f", "lavfi", "-i", "nullsrc=s=64x64:d=0.04", "-f", "null", "-"]  # fmt: skip
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError:
        return None
    try:
        async with asyncio.timeout(timeout):
            _, err = await proc.communicate()
    except TimeoutError:
        return None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    found = _VA_DRIVER.search(err.decode("utf-8", "replace"))
    return driver_name(found.group(1)) if found else None


async def interlaced_sample(binary: str, workdir: Path, timeout: float) -> Path:
    path = workdir / "sample-h264-interlaced.mkv"
    if not path.exists():
        argv = [binary, *_HEAD, "-f", "lavfi", "-i", INTERLACED_SOURCE,
                "-vf", "tinterlace=mode=interleave_top,setfield=tff", "-pix_fmt", "yuv420p",
                "-c:v", "libx264", "-preset", "ultrafast", "-flags", "+ildct+ilme",
                "-x264-params", "tff=1", "-y", str(path)]  # fmt: skip
        async with asyncio.timeout(timeout):
            await ffmpeg.run(
                argv, lambda _: None, stall_timeout=timeout, stop_grace=min(2.0, timeout)
            )
    return path


async def decode_sample(binary: str, workdir: Path, codec: str, timeout: float) -> Path:
    """A second of ``codec`` (a DECODE_SAMPLES key) made with the software encoders."""
    path = workdir / f"sample-{codec}.mp4"
    if not path.exists():
        args, pix_fmt = DECODE_SAMPLES[codec]
        argv = [binary, *_HEAD, "-f", "lavfi", "-i", TEST_SOURCE,
                "-pix_fmt", pix_fmt, *args, "-y", str(path)]  # fmt: skip
        async with asyncio.timeout(timeout):
            await ffmpeg.run(
                argv, lambda _: None, stall_timeout=timeout, stop_grace=min(2.0, timeout)
            )
    return path


def deinterlace_argv(binary: str, backend: Backend, device: Device, sample: Path) -> list[str]:
    """Hardware decode of an interlaced sample through the backend's device deinterlacer."""
    decode = backend.decode
    assert decode is not None and decode.deinterlace is not None
    values = {
        "index": device.index,
        "render_node": device.render_node or "",
        "pix_fmt": "yuv420p",
        "deint_mode": 0,
        "deint_rate": "frame",
        "parity": 0,
    }
    chain = f"{decode.deinterlace},{decode.format}".format_map(values)
    return [binary, *_HEAD, *(a.format_map(values) for a in backend.init), *decode.args,
            "-i", str(sample), "-vf", chain, "-f", "null", "-"]  # fmt: skip


def deinterlace_filters(backend: Backend) -> set[str]:
    assert backend.decode is not None and backend.decode.deinterlace is not None
    return filter_names(backend.decode.deinterlace)


def placebo_argv(binary: str) -> list[str]:
    """libplacebo tone-mapping a PQ picture: it needs a Vulkan device, not only the build."""
    chain = DOVI_TONEMAP.format(width=SIZE[0], height=SIZE[1], pix_fmt="yuv420p")
    return [binary, *_HEAD, "-f", "lavfi", "-i", PQ_SOURCE, "-vf", chain, "-f", "null", "-"]
