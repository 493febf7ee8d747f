"""Which audio and subtitle tracks go into the copy, in what form, and why. Pure functions.

- Text subtitles (SubRip, ASS/SSA, WebVTT, mov_text), embedded or Jellyfin sidecar files,
  become ``mov_text`` tracks with their language and title; the chosen one is the default
  track, forced flags stay. The profile's ``subtitles`` setting keeps ``all`` of them
  (they cost kilobytes) or only the ``chosen`` one (and forced ones, which players show
  on their own for foreign dialogue).
- Image subtitles (PGS, VobSub, DVB) have no MP4 form: the chosen one is burned into the
  picture (which forces a video encode); the others are left out.
- Audio: the chosen track first and default; ``audio.tracks`` keeps ``all`` or the
  ``chosen+original`` (the source's default track, else its first) too. Each is copied
  when the profile's codec and channel count allow it, else encoded to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..catalog.profiles import Profile
from .audio import audio_filter
from .probe import AudioInfo, MediaInfo, SubtitleInfo

__all__ = [
    "IMAGE",
    "TEXT",
    "Track",
    "Tracks",
    "choose",
    "input_args",
    "map_args",
    "output_args",
    "pick_audio",
]

TEXT = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})
IMAGE = frozenset({"hdmv_pgs_subtitle", "dvd_subtitle", "dvb_subtitle", "xsub"})
_STYLED = frozenset({"ass", "ssa"})


@dataclass(frozen=True, slots=True)
class Track:
    """One source track and what becomes of it: ``copy``, ``convert``, ``burn`` or ``drop``."""

    kind: str  # "audio" or "subtitle"
    index: int  # the stream's index in the source (Jellyfin's index for a sidecar file)
    codec: str  # the source's codec
    action: str
    reason: str
    output_codec: str | None = None  # None when burned or dropped
    language: str | None = None
    title: str | None = None
    default: bool = False
    forced: bool = False
    external: bool = False
    path: str | None = None  # a fetched sidecar file
    audio_filter: str | None = None  # the downmix chain of an encoded audio track
    channels: int = 0

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.kind,
            "index": self.index,
            "codec": self.codec,
            "action": self.action,
            "reason": self.reason,
        }
        optional = (
            ("outputCodec", self.output_codec),
            ("language", self.language),
            ("title", self.title),
        )
        body.update({key: value for key, value in optional if value is not None})
        if self.action in ("copy", "convert"):
            body["default"] = self.default
        body["forced"] = self.forced
        if self.external:
            body["external"] = True
        return body


@dataclass(frozen=True, slots=True)
class Tracks:
    audio: tuple[Track, ...] = ()  # in output order, the chosen one first
    subtitles: tuple[Track, ...] = ()  # soft mov_text tracks, in output order
    burn: Track | None = None  # the chosen image subtitle, burned into the picture
    dropped: tuple[Track, ...] = ()

    def all(self) -> list[Track]:
        return [*self.audio, *self.subtitles, *([self.burn] if self.burn else []), *self.dropped]

    @property
    def externals(self) -> list[Track]:
        """The sidecar files, each an ffmpeg input after the source (input 1, 2, ...)."""
        return [t for t in self.subtitles if t.external]


def pick_audio(media: MediaInfo, requested: int | None) -> AudioInfo | None:
    """The client's AudioStreamIndex when it names an audio stream, else the one the
    container marks as default, else the first one."""
    if requested is not None and (chosen := media.audio_by_index(requested)) is not None:
        return chosen
    return next((a for a in media.audio if a.default), media.audio[0] if media.audio else None)


def _audio_order(media: MediaInfo, chosen: AudioInfo, mode: str) -> list[AudioInfo]:
    if mode == "all":
        return [chosen, *(a for a in media.audio if a.index != chosen.index)]
    if mode == "chosen+original":
        original = next((a for a in media.audio if a.default), media.audio[0])
        return [chosen] if original.index == chosen.index else [chosen, original]
    return [chosen]


def _audio(profile: Profile, media: MediaInfo, requested: int | None, downmix: str) -> list[Track]:
    chosen = pick_audio(media, requested)
    if chosen is None:
        return []
    kept = _audio_order(media, chosen, profile.audio.tracks)
    spec = profile.audio
    tracks = []
    for a in kept:
        first = a.index == chosen.index
        role = "the chosen track" if first else f"kept by audio: {spec.tracks}"
        fits = a.codec == spec.codec and a.channels <= spec.channels
        tracks.append(
            Track(
                kind="audio",
                index=a.index,
                codec=a.codec,
                action="copy" if fits else "convert",
                reason=f"{role}; "
                + ("fits the profile" if fits else f"{spec.codec} {spec.channels} ch for phones"),
                output_codec=a.codec if fits else spec.codec,
                language=a.language if a.language and a.language != "und" else None,
                title=a.title,
                default=first,
                channels=a.channels,
                audio_filter=None
                if fits
                else audio_filter(a.channels, a.layout, spec.channels, downmix),
            )
        )
    tracks += [
        Track(
            kind="audio",
            index=a.index,
            codec=a.codec,
            action="drop",
            reason=f"not chosen (audio: {spec.tracks})",
            language=a.language if a.language and a.language != "und" else None,
            title=a.title,
        )
        for a in media.audio
        if all(a.index != k.index for k in kept)
    ]
    return tracks


def _subtitle(sub: SubtitleInfo, action: str, reason: str, chosen: bool) -> Track:
    text = sub.codec in TEXT
    return Track(
        kind="subtitle",
        index=sub.index,
        codec=sub.codec,
        action=action,
        reason=reason,
        output_codec="mov_text" if action in ("copy", "convert") and text else None,
        language=sub.language,
        title=sub.title,
        default=chosen and action in ("copy", "convert"),
        forced=sub.forced,
        external=sub.external,
        path=sub.path,
    )


def _subtitles(profile: Profile, subs: list[SubtitleInfo], chosen: int | None) -> list[Track]:
    tracks = []
    for sub in subs:
        is_chosen = sub.index == chosen
        if sub.external and sub.problem:
            why = f"external file not used: {sub.problem}"
            tracks.append(_subtitle(sub, "drop", why, False))
        elif sub.codec in TEXT:
            if is_chosen or profile.subtitles == "all" or sub.forced:
                why = "the chosen track" if is_chosen else (
                    "forced" if sub.forced and profile.subtitles == "chosen" else "selectable"
                )  # fmt: skip
                action = "copy" if sub.codec == "mov_text" else "convert"
                styled = "; ASS styling is lost in mov_text" if sub.codec in _STYLED else ""
                how = "mov_text" if action == "convert" else "kept as mov_text"
                reason = f"{why}; text as {how}{styled}"
                tracks.append(_subtitle(sub, action, reason, is_chosen))
            else:
                tracks.append(_subtitle(sub, "drop", "not chosen (subtitles: chosen)", False))
        elif sub.codec in IMAGE:
            if is_chosen:
                reason = "chosen image subtitle: MP4 has no soft form, so it is burned in"
                tracks.append(_subtitle(sub, "burn", reason, True))
            else:
                reason = "image subtitle: MP4 cannot hold it as a track and it was not chosen"
                tracks.append(_subtitle(sub, "drop", reason, False))
        else:
            reason = f"{sub.codec} subtitles have no MP4 form"
            tracks.append(_subtitle(sub, "drop", reason, False))
    return tracks


def choose(
    profile: Profile,
    media: MediaInfo,
    audio_index: int | None = None,
    subtitle_index: int | None = None,
    *,
    downmix: str = "default",
    external: tuple[SubtitleInfo, ...] = (),
) -> Tracks:
    """What becomes of each track of ``media`` (and of the fetched sidecar files)."""
    audio = _audio(profile, media, audio_index, downmix)
    subs = _subtitles(profile, [*media.subtitles, *external], subtitle_index)
    kept_subs = [t for t in subs if t.action in ("copy", "convert")]
    kept_subs.sort(key=lambda t: not t.default)  # the chosen track first
    return Tracks(
        audio=tuple(t for t in audio if t.action != "drop"),
        subtitles=tuple(kept_subs),
        burn=next((t for t in subs if t.action == "burn"), None),
        dropped=tuple(t for t in [*audio, *subs] if t.action == "drop"),
    )


def _disposition(track: Track) -> str:
    flags = [*(["default"] if track.default else []), *(["forced"] if track.forced else [])]
    return "+".join(flags) or "0"


def _tags(spec: str, track: Track) -> list[str]:
    args = ["-metadata:s:" + spec, f"language={track.language or 'und'}"]
    if track.title:  # MP4 keeps a track's name as its handler name
        args += ["-metadata:s:" + spec, f"title={track.title}"]
        args += ["-metadata:s:" + spec, f"handler_name={track.title}"]
    return [*args, "-disposition:" + spec, _disposition(track)]


def input_args(tracks: Tracks) -> list[str]:
    """The sidecar files as inputs 1, 2, ... (local temp files: no protocol but file)."""
    args: list[str] = []
    for track in tracks.externals:
        assert track.path is not None
        args += ["-protocol_whitelist", "file", "-i", track.path]
    return args


def map_args(tracks: Tracks) -> list[str]:
    """The audio and subtitle ``-map`` options, after the video's."""
    args = [arg for t in tracks.audio for arg in ("-map", f"0:{t.index}")]
    sidecar = 0
    for t in tracks.subtitles:
        if t.external:
            sidecar += 1
            args += ["-map", f"{sidecar}:0"]
        else:
            args += ["-map", f"0:{t.index}"]
    return args


def output_args(tracks: Tracks, profile: Profile) -> list[str]:
    """Codec, tag and disposition options of every kept audio and subtitle track."""
    spec = profile.audio
    args: list[str] = []
    single = len(tracks.audio) == 1  # one track: the plain options, as before
    for n, t in enumerate(tracks.audio):
        s = "" if single else f":{n}"
        if t.action == "copy":
            args += [f"-c:a{s}", "copy"]
        else:
            args += [f"-filter:a{s}" if s else "-af", t.audio_filter] if t.audio_filter else []
            args += [f"-c:a{s}", spec.codec, f"-ac{':a' + s if s else ''}", str(spec.channels)]
            args += [f"-b:a{s}", str(spec.bitrate)]
        args += _tags(f"a:{n}", t)
    if tracks.subtitles:
        args += ["-c:s", "mov_text"]
        for n, t in enumerate(tracks.subtitles):
            args += _tags(f"s:{n}", t)
    else:
        args += ["-sn"]
    return args
