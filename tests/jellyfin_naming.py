"""Jellyfin's naming rules, rewritten in Python for the Jellyfin double (tests/jellyfin_double.py).

Read from jellyfin/jellyfin at v10.11.11 and v12.0-rc5; each function names the file it follows.
`new` below means the 12.0 rules, otherwise 10.11 (10.10 behaves as 10.11 here).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

# the .NET type names LibraryManager.GetNewItemIdInternal prefixes to the key it hashes
MOVIE = "MediaBrowser.Controller.Entities.Movies.Movie"
EPISODE = "MediaBrowser.Controller.Entities.TV.Episode"
SERIES = "MediaBrowser.Controller.Entities.TV.Series"
SEASON = "MediaBrowser.Controller.Entities.TV.Season"
FOLDER = "MediaBrowser.Controller.Entities.Folder"
VIDEO = "MediaBrowser.Controller.Entities.Video"  # a local alternate version (BaseItem.cs)
COLLECTION_FOLDER = "MediaBrowser.Controller.Entities.CollectionFolder"
PLAYLIST = "MediaBrowser.Controller.Playlists.Playlist"


def item_id(type_name: str, key: str) -> str:
    """LibraryManager.GetNewItemIdInternal + BaseExtensions.GetMD5: MD5 over the UTF-16LE text
    type full name + key (case kept: EnableCaseSensitiveItemIds defaults to true), read into a
    System.Guid (first three fields little-endian) and printed "N": 32 lower-case hex."""
    digest = hashlib.md5((type_name + key).encode("utf-16-le")).digest()
    return uuid.UUID(bytes_le=digest).hex


# NamingOptions.cs VideoFileExtensions (12.0 drops .ogg)
VIDEO_EXTENSIONS = frozenset(
    (
    ".001", ".3g2", ".3gp", ".amv", ".asf", ".asx", ".avi", ".bin", ".bivx", ".divx", ".dv",
    ".dvr-ms", ".f4v", ".fli", ".flv", ".ifo", ".img", ".iso", ".m2t", ".m2ts", ".m2v", ".m4v",
    ".mkv", ".mk3d", ".mov", ".mp4", ".mpe", ".mpeg", ".mpg", ".mts", ".mxf", ".nrg", ".nsv",
    ".nuv", ".ogg", ".ogm", ".ogv", ".pva", ".qt", ".rec", ".rm", ".rmvb", ".strm", ".svq3",
    ".tp", ".ts", ".ty", ".viv", ".vob", ".vp3", ".webm", ".wmv", ".wtv", ".xvid",
    )
)  # fmt: skip

# IgnorePatterns.cs: folder names ignored anywhere, besides every dot-name ("**/.*")
_IGNORED_NAMES = frozenset(
    (
    "metadata", "ps3_update", "ps3_vprm", "extrafanart", "extrathumbs", "lost+found", "subs",
    "temprec", "tempsbe", "eadir", "@eadir", "#recycle", "@recycle", "$recycle.bin",
    "system volume information", "thumbs.db",
    )
)  # fmt: skip
_IGNORED_GLOBS = re.compile(r"^(sample\.[^.]{1,5}|.*\.sample\.[^.]{1,5}|.*\.(trickplay|bts|sync))$")


def is_ignored(name: str) -> bool:
    """IgnorePatterns.ShouldIgnore for one path component (the globs are `**/x`)."""
    if name.startswith("."):
        return True
    lower = name.lower()
    return lower in _IGNORED_NAMES or bool(_IGNORED_GLOBS.match(lower))


# NamingOptions.cs VideoExtraRules: folder names, whole file names, file name suffixes
EXTRA_FOLDERS = frozenset(
    (
        "trailers", "backdrops", "behind the scenes", "deleted scenes", "interviews", "scenes",
        "samples", "shorts", "featurettes", "extras", "extra", "other", "clips",
    )
)  # fmt: skip
_EXTRA_NAMES = ("trailer", "sample")
_EXTRA_SUFFIXES = (
    "-trailer", ".trailer", "_trailer", "- trailer", "-sample", ".sample", "_sample", "- sample",
    "-scene", "-clip", "-interview", "-behindthescenes", "-deleted", "-deletedscene",
    "-featurette", "-short", "-extra", "-other",
)  # fmt: skip


def is_extra(path: PurePosixPath, library_root: str) -> bool:
    """ExtraRuleResolver.GetExtraInfo (video rules only)."""
    stem = path.stem.lower()
    if stem in _EXTRA_NAMES:
        return True
    trimmed = stem.rstrip("0123456789")
    if any(trimmed.endswith(s) for s in _EXTRA_SUFFIXES):
        return True
    return path.parent.name.lower() in EXTRA_FOLDERS and str(path.parent) != library_root


_TOKENS = (
    "3d|sbs|tab|hsbs|htab|mvc|HDR|HDC|UHD|UltraHD|4k|ac3|dts|custom|dc|divx|divx5|dsr|dsrip|"
    "dutch|dvd|dvdrip|dvdscr|dvdscreener|screener|dvdivx|cam|fragment|fs|hdtv|hdrip|hdtvrip|"
    "internal|limited|multi|subs|ntsc|ogg|ogm|pal|pdtv|proper|repack|rerip|retail|cd[1-9]|r5|"
    "bd5|bd|se|svcd|swedish|german|read.nfo|nfofix|unrated|ws|telesync|ts|telecine|tc|brrip|"
    "bdrip|480p|480i|576p|576i|720p|720i|1080p|1080i|2160p|hrhd|hrhdtv|hddvd|bluray|blu-ray|"
    "x264|x265|h264|h265|xvid|xvidvd|xxx|www.www|AAC|DTS"
)
_D = r"[ _\,\.\(\)\[\]\-]"
_COMMON_CLEAN = [
    r"^\s*(?P<cleaned>.+?)\WE[0-9]+(-|~)E?[0-9]+(\W|$)",
    r"^\s*\[[^\]]+\](?!\.\w+$)\s*(?P<cleaned>.+)",
    r"^\s*(?P<cleaned>.+?)\s+-\s+[0-9]+\s*$",
    r"^\s*(?P<cleaned>.+?)(([-._ ](trailer|sample))|-(scene|clip|behindthescenes|deleted"
    r"|deletedscene|featurette|short|interview|other|extra))$",
]
# NamingOptions.cs CleanStrings: 10.11, then 12.0 (tokens by lookahead, brackets at the end)
CLEAN_OLD = [
    re.compile(p, re.IGNORECASE)
    for p in [
        rf"^\s*(?P<cleaned>.+?){_D}({_TOKENS}|\[.*\])({_D}|$)",
        r"^(?P<cleaned>.+?)(\[.*\])",
        *_COMMON_CLEAN,
    ]
]
CLEAN_NEW = [
    re.compile(p, re.IGNORECASE)
    for p in [
        rf"^\s*(?P<cleaned>.+?){_D}({_TOKENS})(?={_D}|$)",
        r"^\s*(?P<cleaned>.+?)((\s*\[[^\]]+\]\s*)+)(\.[^\s]+)?$",
        *_COMMON_CLEAN,
    ]
]
# NamingOptions.cs CleanDateTimes
_YEAR_TAIL = r"(19[0-9]{2}|20[0-9]{2})(?![0-9]+|\W[0-9]{2}\W[0-9]{2})([ _\,\.\(\)\[\]\-][^0-9]|).*(19[0-9]{2}|20[0-9]{2})*"  # noqa: E501
CLEAN_DATES = [
    re.compile(r"(.+[^_\,\.\(\)\[\]\-])[_\.\(\)\[\]\-]" + _YEAR_TAIL, re.IGNORECASE),
    re.compile(r"(.+[^_\,\.\(\)\[\]\-])[ _\.\(\)\[\]\-]+" + _YEAR_TAIL, re.IGNORECASE),
]


def clean_string(name: str, new: bool) -> str | None:
    """CleanStringParser.TryClean: every expression in turn on the result so far (12.0 trims)."""
    if not name:
        return None
    cleaned = False
    for expression in CLEAN_NEW if new else CLEAN_OLD:
        match = expression.search(name)
        if match:
            cleaned = True
            name = match.group("cleaned").strip() if new else match.group("cleaned")
    return name if cleaned else None


def clean_date(name: str) -> tuple[str, int | None]:
    """CleanDateTimeParser.Clean: the name before the year, and the year."""
    for expression in CLEAN_DATES:
        match = expression.search(name)
        if match:
            return match.group(1).rstrip(), int(match.group(2))
    return name, None


_3D_DELIMITERS = re.compile(r"[()\-._\[\] ]")
_3D_PLAIN = ("fsbs", "hsbs", "sbs", "ftab", "htab", "tab", "sbs3d", "mvc")


def is_3d(path: PurePosixPath) -> bool:
    """Format3DParser.Parse: a 3D token (after `3d` for the Kodi rules) in the name."""
    tokens = [t.lower() for t in _3D_DELIMITERS.split(path.name)]
    after_3d = tokens[tokens.index("3d") + 1 :] if "3d" in tokens else []
    return any(t in ("hsbs", "sbs", "htab", "tab") for t in after_3d) or any(
        t in _3D_PLAIN for t in tokens
    )


@dataclass
class VideoFile:
    """Emby.Naming VideoFileInfo: what VideoResolver.Resolve makes of one file."""

    path: PurePosixPath
    name: str
    year: int | None
    extra: bool
    three_d: bool

    @property
    def stem(self) -> str:
        return self.path.stem


def resolve_video(path: PurePosixPath, library_root: str, new: bool) -> VideoFile | None:
    """VideoResolver.Resolve with parseName: None for a file that is not a video."""
    extensions = VIDEO_EXTENSIONS - {".ogg"} if new else VIDEO_EXTENSIONS
    if path.suffix.lower() not in extensions:
        return None
    name, year = clean_date(path.stem)
    name = clean_string(name, new) or name
    return VideoFile(path, name, year, is_extra(path, library_root), is_3d(path))


@dataclass
class Grouped:
    """Emby.Naming VideoInfo: one item, its file and its local alternate versions."""

    primary: VideoFile
    name: str
    alternates: list[VideoFile] = field(default_factory=list)


def _chunks(text: str) -> list[tuple[int, int]]:
    """AlphanumericComparator as a sort key: characters by ordinal, digit runs by value."""
    key: list[tuple[int, int]] = []
    for run in re.findall(r"\d+|\D", text):
        key.append((ord("0"), int(run)) if run.isdigit() else (ord(run), 0))
    return key


def sort_key(new: bool) -> Callable[[str], Any]:
    """10.11: AlphanumericComparator (ordinal); 12.0: the invariant culture with
    CompareOptions.NumericOrdering, approximated as case-insensitive first, then ordinal."""
    if new:
        return lambda s: (_chunks(s.casefold()), _chunks(s))
    return _chunks


_RESOLUTION = re.compile(r"[0-9]{2}[0-9]+[ip]", re.IGNORECASE)
_MULTI_VERSION = re.compile(r"^\[([^]]*)\]")


def _is_eligible(folder: str, stem: str, new: bool) -> bool:
    """VideoListResolver.IsEligibleForMultiVersion."""
    if not stem.lower().startswith(folder.lower()):
        return False
    rest = stem[len(folder) :].strip()
    cleaned = clean_string(rest, new)
    if cleaned is not None:
        rest = cleaned.strip()
    marks = ("-", "_", ".") if new else ("-",)
    return not rest or rest[0] in marks or bool(_MULTI_VERSION.match(rest))


def _organize(videos: list[Grouped], new: bool, primary: Grouped | None = None) -> Grouped:
    """The order of VideoListResolver.GetVideosGroupedByVersion (12.0: OrganizeAlternateVersions):
    names with a resolution token first (highest first, then by name), then the rest by name."""
    key = sort_key(new)
    with_res = [v for v in videos if _RESOLUTION.search(v.primary.stem)]
    without = [v for v in videos if not _RESOLUTION.search(v.primary.stem)]
    with_res.sort(key=lambda v: key(v.primary.stem))
    with_res.sort(key=lambda v: key(_match(v.primary.stem)), reverse=True)
    ordered = with_res + sorted(without, key=lambda v: key(v.primary.stem))
    chosen = primary or ordered[0]
    ordered.remove(chosen)
    chosen.alternates = [v.primary for v in ordered]
    return chosen


def _match(stem: str) -> str:
    found = _RESOLUTION.search(stem)
    return found.group(0) if found else ""


def group_movie_versions(videos: list[Grouped], new: bool) -> list[Grouped]:
    """VideoListResolver.GetVideosGroupedByVersion: all or nothing for the folder."""
    if not videos:
        return videos
    folder = videos[0].primary.path.parent.name
    if len(folder) <= 1 or len({v.primary.year or -1 for v in videos}) > 1:
        return videos
    primary = None
    for video in videos:
        if not _is_eligible(folder, video.primary.stem, new):
            return videos
        if video.primary.stem == folder:
            primary = video
    chosen = _organize(list(videos), new, primary)
    chosen.name = folder
    return [chosen]


_EPISODE = re.compile(r"[sS](?P<season>[0-9]{1,4})[ ._-]*[eE](?P<episode>[0-9]{1,3})")


def parse_episode(path: PurePosixPath) -> tuple[int | None, int | None]:
    """EpisodePathParser, reduced to SxxEyy in the file name (its Kodi-style first rules)."""
    match = _EPISODE.search(path.name)
    if not match:
        return None, None
    return int(match.group("season")), int(match.group("episode"))


def group_episode_versions(videos: list[Grouped]) -> list[Grouped]:
    """12.0 VideoListResolver.GetEpisodesGroupedByVersion: files of one S/E are one episode."""
    if len(videos) < 2:
        return videos
    result: list[Grouped] = []
    groups: dict[str, list[Grouped]] = {}
    for video in videos:
        season, episode = parse_episode(video.primary.path)
        if episode is None:
            result.append(video)
            continue
        groups.setdefault(f"S{season or 0}E{episode}", []).append(video)
    for group in groups.values():
        result.append(group[0] if len(group) == 1 else _organize(group, True))
    return result


def resolve_videos(
    files: Sequence[PurePosixPath], library_root: str, multi_version: bool, tv: bool, new: bool
) -> list[Grouped]:
    """MovieResolver.ResolveVideos + VideoListResolver.Resolve: `\\bsample\\b` files and extras
    dropped (no stacking: StackResolver is not modelled)."""
    sample = re.compile(r"\bsample\b", re.IGNORECASE)
    videos: list[Grouped] = []
    for path in files:
        video = None if sample.search(path.name) else resolve_video(path, library_root, new)
        if video is not None and not video.extra:
            videos.append(Grouped(video, video.name))
    if not multi_version:
        return videos
    if tv:
        return group_episode_versions(videos)
    return group_movie_versions(videos, new)


def source_name_old(stem: str, folder: str, has_local: bool) -> str:
    """10.11 BaseItem.GetMediaSourceName: minus the folder name, trimmed of ' ' and '-'."""
    if has_local and len(stem) > len(folder) and stem.lower().startswith(folder.lower()):
        rest = stem[len(folder) :].lstrip(" -")
        if rest.strip():
            return rest
    return stem


def common_prefix(stems: Sequence[str]) -> str | None:
    """12.0 BaseItem.GetCommonVersionPrefix, back to the last '-', '_' or '.' (else a space)."""
    if len(stems) < 2:
        return None
    prefix = stems[0]
    for name in stems[1:]:
        n = 0
        while n < min(len(prefix), len(name)) and prefix[n].upper() == name[n].upper():
            n += 1
        prefix = prefix[:n]
    if all(len(s) != len(prefix) for s in stems):
        cut = len(prefix)
        while cut > 0 and prefix[cut - 1] not in "-_.":
            cut -= 1
        if cut == 0:
            cut = len(prefix)
            while cut > 0 and prefix[cut - 1] != " ":
                cut -= 1
        prefix = prefix[:cut]
    return prefix or None


def source_name_new(stem: str, prefix: str | None, folder: str, has_local: bool) -> str:
    """12.0 BaseItem.GetMediaSourceName: strip the common prefix, else the folder name."""
    if prefix and len(stem) > len(prefix) and stem.lower().startswith(prefix.lower()):
        rest = stem[len(prefix) :].lstrip(" -_.")
        if rest.strip():
            return rest
    if has_local and len(stem) > len(folder) and stem.lower().startswith(folder.lower()):
        rest = stem[len(folder) :].lstrip(" -_.")
        if rest.strip():
            return rest
    return stem
