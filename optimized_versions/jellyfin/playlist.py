"""HLS playlists in what the relay passes on: found, and every URI in them replaced.

FFmpeg's HLS demuxer (the probe's and ffmpeg's) fetches what a playlist names by itself:
segments, ``#EXT-X-KEY``/``#EXT-X-MAP``/``#EXT-X-MEDIA`` URIs, variant playlists. So the
relay rewrites each into a URL of its own before either sees it (``relay.py``). What counts
as a playlist, a line and a URI here is what libavformat reads as one, or more:

- a playlist is an answer that begins ``#EXTM3U`` (after a BOM or whitespace, which FFmpeg
  does not accept there);
- lines end at LF, CR, CR LF or NUL; a line that is not empty and does not start with ``#``
  is a URI; in a ``#`` line, the value of every ``URI=`` attribute is one, attributes parsed
  as FFmpeg's ``ff_parse_key_value`` does (quotes, backslash escapes, commas, spaces).
"""

from __future__ import annotations

import re
from collections.abc import Callable

SNIFF = 64  # the first bytes of an answer: enough to tell a playlist
MAX_BYTES = 4 * 1024 * 1024  # the largest playlist passed on
_BOM = b"\xef\xbb\xbf"
_SPACE = " \t\n\v\f\r"  # C's isspace, as FFmpeg's av_isspace
_LINE_END = re.compile(r"\r\n|\r|\n|\0")


def begins(data: bytes) -> bool:
    """Whether an answer whose first bytes are ``data`` is an HLS playlist."""
    return data.lstrip().removeprefix(_BOM).lstrip().startswith(b"#EXTM3U")


def rewrite(text: str, replace: Callable[[str], str]) -> str:
    """``text`` (a playlist, from its ``#EXTM3U``) with every URI ``u`` in it as
    ``replace(u)``, which must give a URI of letters, digits and ``-._~%/``."""
    lines = []
    for line in _LINE_END.split(text.lstrip(_SPACE + "\ufeff")):
        if line.startswith("#"):
            lines.append(_attributes(line, replace))
        elif uri := line.strip(_SPACE):
            lines.append(replace(uri))
        else:
            lines.append("")
    return "\n".join(lines)


def _attributes(line: str, replace: Callable[[str], str]) -> str:
    """A ``#`` line with each ``URI=`` value replaced (the rest of it as it was)."""
    tag, colon, rest = line.partition(":")
    if not colon:
        return line
    out, at = [tag, colon], 0
    while True:
        begin = at
        while at < len(rest) and (rest[at] in _SPACE or rest[at] == ","):
            at += 1
        equals = rest.find("=", at)
        if at == len(rest) or equals < 0:
            out.append(rest[begin:])
            return "".join(out)
        key, value, end = rest[at : equals + 1], [], equals + 1
        if end < len(rest) and rest[end] == '"':
            end += 1
            while end < len(rest) and rest[end] != '"':
                if rest[end] == "\\":
                    if end + 1 == len(rest):
                        break
                    end += 1
                value.append(rest[end])
                end += 1
            if end < len(rest) and rest[end] == '"':
                end += 1
        else:
            while end < len(rest) and not (rest[end] in _SPACE or rest[end] == ","):
                value.append(rest[end])
                end += 1
        if key.upper() == "URI=":
            out.append(f'{rest[begin:at]}URI="{replace("".join(value))}"')
        else:
            out.append(rest[begin:end])
        at = end
