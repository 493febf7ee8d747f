"""Reading ffmpeg's stderr: why a hardware encoder failed, in plain words, and what to do."""

from __future__ import annotations

from enum import StrEnum


class Failure(StrEnum):
    SOURCE = "source"  # the input is at fault: every backend would fail the same way
    SESSION_CAP = "session-cap"  # NVENC's per-system session limit: full, try again later
    DEVICE_LOST = "device-lost"  # the device or its driver went away: stop using it
    HARDWARE = "hardware"  # this backend cannot do this job: step down the ladder
    OTHER = "other"


# (text in stderr, kind, what it means for the user); first match wins.
PATTERNS: list[tuple[str, Failure, str]] = [
    (
        "OpenEncodeSessionEx failed: out of memory (10)",
        Failure.SESSION_CAP,
        "all NVENC encode sessions are in use (the consumer driver's limit): will retry",
    ),
    ("No capable devices found", Failure.HARDWARE, "GPU found, no hardware encoder on it"),
    ("unsupported device (2)", Failure.HARDWARE, "GPU found, no hardware encoder on it"),
    (
        "Cannot load libnvidia-encode",
        Failure.HARDWARE,
        "the NVIDIA encode library is missing: run the container with "
        "NVIDIA_DRIVER_CAPABILITIES=compute,video,utility",
    ),
    ("Cannot load libcuda", Failure.DEVICE_LOST, "the NVIDIA driver (libcuda) is not available"),
    ("Failed to initialize NVML", Failure.DEVICE_LOST, "the NVIDIA GPU was lost (NVML failed)"),
    ("CUDA_ERROR_NO_DEVICE", Failure.DEVICE_LOST, "the NVIDIA GPU was lost"),
    (
        "Failed to initialise VAAPI connection",
        Failure.DEVICE_LOST,
        "the VAAPI driver could not open the render node (wrong driver, or no access to it)",
    ),
    ("No VA display found", Failure.DEVICE_LOST, "no VAAPI display on the render node"),
    (
        "Error creating a MFX session",
        Failure.HARDWARE,
        "the Intel oneVPL (QSV) runtime could not start a session",
    ),
    ("Device creation failed", Failure.DEVICE_LOST, "the hardware device could not be opened"),
    ("10 bit encode not supported", Failure.HARDWARE, "this encoder cannot encode 10-bit video"),
    (
        "No usable encoding profile found",
        Failure.HARDWARE,
        "the driver offers no encoding profile for this codec",
    ),
    ("Server returned", Failure.SOURCE, "the media server refused the source"),
    ("Connection refused", Failure.SOURCE, "the media server could not be reached"),
    ("Invalid data found when processing input", Failure.SOURCE, "the source is not valid media"),
    ("No such file or directory", Failure.SOURCE, "the source file does not exist"),
]


def classify(stderr: list[str]) -> tuple[Failure, str]:
    """The kind of failure and a plain explanation; the last stderr line when unknown."""
    text = "\n".join(stderr)
    for needle, kind, meaning in PATTERNS:
        if needle in text:
            return kind, meaning
    last = next((line for line in reversed(stderr) if line.strip()), "no error output")
    return Failure.OTHER, last.strip()[:300]
