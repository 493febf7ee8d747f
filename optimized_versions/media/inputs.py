"""How ffmpeg reads a job's source: the whole of it (the encode), or a window of it (the
quality measurement and the target search, media/quality.py)."""

from __future__ import annotations

from .probe import protocols

# An HTTP source that drops is asked again from where it stopped (Range), a few times.
_RECONNECT = ["-reconnect", "1", "-reconnect_on_network_error", "1",
              "-reconnect_delay_max", "4", "-reconnect_max_retries", "5"]  # fmt: skip


def source_input(source: str, demuxer: str | None = None) -> list[str]:
    """Input arguments for a job's source: an http URL (the relay) or a file path, and
    no other protocol (no redirects to file:, no concat or subfile tricks: ``probe``);
    ``demuxer``: the one the probe read it with (MediaInfo.format), so that what the probe
    read as one thing ffmpeg cannot read as another (a DASH manifest that fetches what it
    names, a demuxer the probe's libraries lack)."""
    network = source.startswith(("http://", "https://"))
    forced = ["-f", demuxer.split(",")[0]] if demuxer else []
    return ["-protocol_whitelist", protocols(source), *forced, *(_RECONNECT if network else []),
            "-analyzeduration", "200M", "-probesize", "1G", "-i", source]  # fmt: skip


def window(input_args: list[str], seek: float) -> list[str]:
    """``input_args`` (ending ``-i URL``) read from ``seek`` seconds after the file's start
    (the key frame before it), keeping the file's own time stamps (``-copyts``): the caller
    cuts the frames it wants by those (media/quality.py's Clock). No seek at or before the
    start: an HLS demuxer asked for 0 may begin at its second segment."""
    *head, flag, url = input_args
    assert flag == "-i"
    seeking = ["-noaccurate_seek", "-ss", f"{seek:.3f}"] if seek > 0 else []
    return [*head, "-copyts", *seeking, "-i", url]
