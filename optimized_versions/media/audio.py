"""Surround to stereo: which matrix folds the channels, and a limiter so that it never clips.

``DOWNMIX`` picks the matrix (Jellyfin's ``DownMixStereoAlgorithm``):

- ``default``: FFmpeg's own matrix (front + 0.707 centre + 0.707 surround, LFE dropped),
  what a bare ``-ac 2`` did;
- ``dave750``: Dave_750's matrix (fronts and surrounds at 0.707, centre and LFE at half):
  fuller bass and surround, the dialogue a little lower than ``default``;
- ``nightmode``: the centre at full level, fronts and surrounds at 0.3: dialogue first,
  effects tamed (late-night listening);
- ``rfc7845``: the Opus/Vorbis matrix (RFC 7845 section 5.1.1.2), normalised.

Every matrix sums more than one channel into each side, so loud scenes add up past full
scale: a bare ``-ac 2`` of fronts and surrounds at -3 dBFS peaks near +2 dBFS. The fold is
done in float and followed by a look-ahead limiter at -1 dBFS (headroom for the AAC
encoder's overshoot). Jellyfin instead boosts the downmix (x2 by default) and clips.
"""

from __future__ import annotations

DOWNMIXES = ("default", "dave750", "nightmode", "rfc7845")

# 7.1 is first folded to 5.1(side) as Jellyfin does (its AC-4 step): sides + backs at 0.707
_71_TO_51 = "pan=5.1(side)|c0=c0|c1=c1|c2=c2|c3=c3|c4=0.707*c4+0.707*c6|c5=0.707*c5+0.707*c7"
# Matrices over 5.1's channel order: FL FR FC LFE SL/BL SR/BR (c0..c5)
_MATRICES_51 = {
    "dave750": "pan=stereo|c0=0.5*c2+0.707*c0+0.707*c4+0.5*c3|c1=0.5*c2+0.707*c1+0.707*c5+0.5*c3",
    "nightmode": "pan=stereo|c0=c2+0.30*c0+0.30*c4|c1=c2+0.30*c1+0.30*c5",
    "rfc7845": "pan=stereo|c0=0.374107*c2+0.529067*c0+0.458186*c4+0.264534*c5+0.374107*c3"
    "|c1=0.374107*c2+0.529067*c1+0.458186*c5+0.264534*c4+0.374107*c3",
}
# float first: a fold in the source's integer format clips before the limiter can act
FLOAT = "aformat=sample_fmts=fltp"
LIMITER = "alimiter=limit=0.891:level=0:latency=1"  # -1 dBFS, no make-up gain, no delay


def _layout(channels: int, layout: str) -> str:
    """The layout the matrices know, guessed from the channel count when unnamed."""
    if layout in ("5.1", "5.1(side)"):
        return "5.1"
    if layout:  # 7.1(wide) and others: FFmpeg's matrix knows where each channel goes
        return layout
    return {6: "5.1", 8: "7.1"}.get(channels, "")


def downmix_filter(channels: int, layout: str, downmix: str) -> str:
    """The ``-af`` chain that folds ``channels`` to stereo without clipping."""
    if downmix not in DOWNMIXES:
        raise ValueError(f"unknown downmix {downmix!r}; expected one of {', '.join(DOWNMIXES)}")
    shape = _layout(channels, layout)
    matrix = _MATRICES_51.get(downmix) if shape in ("5.1", "7.1") else None
    if matrix is None:  # "default", or a layout without a matrix of its own
        fold = "aformat=sample_fmts=fltp:channel_layouts=stereo"
        return f"{fold},{LIMITER}"
    steps = [FLOAT, *([_71_TO_51] if shape == "7.1" else []), matrix, LIMITER]
    return ",".join(steps)


def audio_filter(channels: int, layout: str, out_channels: int, downmix: str) -> str | None:
    """A downmix chain when surround becomes stereo; None when the channels stay."""
    if out_channels != 2 or channels <= 2:
        return None
    return downmix_filter(channels, layout, downmix)
