"""A stand-in for an ffmpeg build on a GPU host, for tests on machines without a GPU.

Run through a wrapper script that the tests write (the ``fake`` fixture in gpu_host.py). It answers
``-version``/``-encoders``/``-hwaccels``/``-filters`` like the real build (which lists
NVENC, QSV and VAAPI), and runs hardware command lines by translating them into a real
software encode, so outputs are real files. A scenario file (JSON, rewritten by tests
between runs) makes chosen encoders or hardware decoders fail with the real error text:

    {"fail": {"h264_nvenc": {"text": "...", "times": 1}}, "hide": ["hevc_qsv"], "log": "..."}

``short`` cuts an encoder's output ({"h264_nvenc": 1.0}: one second), ``vaapi_driver``
is what libva announces when a VAAPI device opens ("Intel i965 driver for ..."), a ``fail``
key may also name a filter, ``env_log`` records CUDA_DEVICE_ORDER with each argv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# hardware-only options and how many values follow each
DROP = {
    "-init_hw_device": 1,
    "-filter_hw_device": 1,
    "-hwaccel": 1,
    "-hwaccel_output_format": 1,
    "-hwaccel_device": 1,
    "-low_power": 1,
    "-rc": 1,
    "-rc_mode": 1,
    "-look_ahead": 1,
    "-extra_hw_frames": 1,
    "-async_depth": 1,
    "-qsv_device": 1,
    "-vaapi_device": 1,
    "-extbrc": 1,
    "-global_quality": 1,
    "-profile:v": 1,
    "-preset": 1,
    "-crf": 1,
    "-spatial-aq": 1,
    "-temporal-aq": 1,
    "-b_ref_mode": 1,
    "-tune": 1,
    "-mbbrc": 1,
    "-sei": 1,
}
SOFTWARE = {
    "h264": ["libx264", "-preset", "ultrafast"],
    "hevc": ["libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
    "av1": ["libsvtav1", "-preset", "12"],
}
HW_FORMATS = {"cuda", "vaapi", "qsv"}


def translate_filter(chain: str) -> str:
    out = []
    for part in chain.split(","):
        name, _, args = part.partition("=")
        if name in ("hwupload", "hwdownload", "hwupload_cuda", "hwmap"):
            continue
        if name == "format" and args in HW_FORMATS:
            continue
        if name.startswith("tonemap_"):
            continue
        if name in ("bwdif_cuda", "yadif_cuda"):  # the same options as the CPU filters
            out.append(f"{name.removesuffix('_cuda')}={args}")
            continue
        if name == "deinterlace_vaapi":
            out.append("bwdif=mode=" + ("1" if "rate=field" in args else "0"))
            continue
        if name == "libplacebo":  # a host with a Vulkan device: scale and convert on the CPU
            options = dict(kv.split("=", 1) for kv in args.split(":") if "=" in kv)
            out.append(f"scale=w={options['w']}:h={options['h']},format={options['format']}")
            continue
        if name in ("scale_cuda", "scale_vaapi", "scale_qsv", "vpp_qsv"):
            options = dict(kv.split("=", 1) for kv in args.split(":") if "=" in kv)
            if "w" in options and "h" in options:
                out.append(f"scale=w={options['w']}:h={options['h']}")
            if options.get("format"):
                out.append(f"format={options['format']}")
            continue
        out.append(part)
    return ",".join(out) or "null"


def translate(argv: list[str], short: dict[str, float] | None = None) -> list[str]:
    """The software command line for a hardware one; ``short`` maps an encoder to the
    seconds its output is cut to (a hardware encoder that stops early)."""
    out: list[str] = []
    cut = next((seconds for name, seconds in (short or {}).items() if name in argv), None)
    av1 = any(a.startswith("av1_") for a in argv)  # SVT-AV1 takes no -maxrate/-bufsize
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in DROP or (av1 and arg in ("-maxrate", "-bufsize")):
            i += 1 + DROP.get(arg, 1)
            continue
        if arg in ("-vf", "-filter:v") and i + 1 < len(argv):
            out += [arg, translate_filter(argv[i + 1])]
            i += 2
            continue
        if arg in ("-c:v", "-codec:v", "-vcodec") and i + 1 < len(argv):
            codec = argv[i + 1].split("_")[0]
            if argv[i + 1].endswith(("_nvenc", "_qsv", "_vaapi", "_amf")):
                out += [arg, *SOFTWARE[codec]]
                i += 2
                continue
        out.append(arg)
        i += 1
    if cut is not None:
        out[-1:-1] = ["-t", str(cut)]  # before the output file
    return out


def load(path: str | None) -> dict[str, Any]:
    if not path or not Path(path).exists():
        return {}
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def failure(argv: list[str], scenario: dict[str, Any], path: str | None) -> str | None:
    """The error text to fail with, when the argv uses something the scenario breaks."""
    chain = argv[argv.index("-vf") + 1] if "-vf" in argv else ""
    filters = {part.split("=", 1)[0] for part in chain.split(",")}
    for name, spec in scenario.get("fail", {}).items():
        if (name in argv or name in filters) and spec.get("times", 1) != 0:
            if spec.get("times", -1) > 0 and path:
                spec["times"] -= 1
                Path(path).write_text(json.dumps(scenario))
            return str(spec["text"])
    return None


def main() -> None:
    real, path = os.environ["FAKE_FFMPEG_REAL"], os.environ.get("FAKE_FFMPEG_SCENARIO")
    argv = sys.argv[1:]
    scenario = load(path)
    if scenario.get("log"):
        with open(scenario["log"], "a") as log:
            log.write(json.dumps(argv) + "\n")
    if scenario.get("env_log"):  # what a backend put in ffmpeg's environment
        with open(scenario["env_log"], "a") as log:
            log.write(json.dumps([argv, os.environ.get("CUDA_DEVICE_ORDER")]) + "\n")
    if any(a in argv for a in ("-encoders", "-hwaccels", "-filters", "-version")):
        listing = subprocess.run([real, *argv], capture_output=True, text=True).stdout
        hidden = scenario.get("hide", [])  # a build without these encoders or filters
        kept = [line for line in listing.splitlines() if not any(f" {h} " in line for h in hidden)]
        sys.stdout.write("\n".join(kept) + "\n")
        return
    text = failure(argv, scenario, path)
    if text is not None:
        sys.stderr.write(text + "\n")
        sys.exit(1)
    if scenario.get("vaapi_driver") and any(a.startswith("vaapi=") for a in argv):
        sys.stderr.write(f"[AVHWDeviceContext @ 0x1] VAAPI driver: {scenario['vaapi_driver']}.\n")
        sys.stderr.flush()
    os.execv(real, [real, *translate(argv, scenario.get("short", {}))])


if __name__ == "__main__":
    main()
