"""Where a copy may go so that Jellyfin lists it as a version of its item, and why not.

Jellyfin's rules (Emby.Naming/Video/VideoListResolver.cs, NamingOptions.CleanStrings,
MovieResolver.cs; docs/publishing.md) read again here before anything is written, on the
folder as it is now: a movie in its own folder with no other visible subfolder, every video
file's name the folder's name plus nothing, ``-...`` or ``[...]`` (12 also ``_`` and ``.``)
after Jellyfin's clean words, one year, and an order in which the original stays first (the
item's id is made from its first file's path). Episodes group by name only on 12; on 10.x
the copy is its own episode until it is merged. Pure: a listing in, a Placement out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

VIDEO = re.compile(  # NamingOptions.VideoFileExtensions, the usual ones
    r"\.(mkv|mp4|m4v|avi|mov|wmv|ts|m2ts|mts|webm|mpg|mpeg|flv|ogv|3gp|iso|vob|divx|xvid|m2v)$",
    re.IGNORECASE,
)
# extras folders (NamingOptions.VideoExtraRules) and file suffixes (its last clean string)
EXTRAS_FOLDERS = re.compile(
    r"^(behind the scenes|deleted scenes|interviews|scenes|samples|shorts|featurettes|clips"
    r"|other|extras|trailers|theme-music|backdrops)$",
    re.IGNORECASE,
)
_EXTRA_FILE = re.compile(
    r"(([-._ ](trailer|sample))|-(scene|clip|behindthescenes|deleted|deletedscene|featurette"
    r"|short|interview|other|extra))$",
    re.IGNORECASE,
)
_TOKENS = (
    "3d|sbs|tab|hsbs|htab|mvc|HDR|HDC|UHD|UltraHD|4k|ac3|dts|custom|dc|divx|divx5|dsr|dsrip|"
    "dutch|dvd|dvdrip|dvdscr|dvdscreener|screener|dvdivx|cam|fragment|fs|hdtv|hdrip|hdtvrip|"
    "internal|limited|multi|subs|ntsc|ogg|ogm|pal|pdtv|proper|repack|rerip|retail|cd[1-9]|r5|"
    "bd5|bd|se|svcd|swedish|german|read.nfo|nfofix|unrated|ws|telesync|ts|telecine|tc|brrip|"
    "bdrip|480p|480i|576p|576i|720p|720i|1080p|1080i|2160p|hrhd|hrhdtv|hddvd|bluray|blu-ray|"
    r"x264|x265|h264|h265|xvid|xvidvd|xxx|www.www|AAC|DTS|\[.*\]"
)
CLEAN = [
    re.compile(rf"^\s*(?P<cleaned>.+?)[ _\,\.\(\)\[\]\-]({_TOKENS})([ _\,\.\(\)\[\]\-]|$)", re.I),
    re.compile(r"^(?P<cleaned>.+?)(\[.*\])", re.I),
    re.compile(r"^\s*(?P<cleaned>.+?)\WE[0-9]+(-|~)E?[0-9]+(\W|$)", re.I),
    re.compile(r"^\s*\[[^\]]+\](?!\.\w+$)\s*(?P<cleaned>.+)", re.I),
    re.compile(r"^\s*(?P<cleaned>.+?)\s+-\s+[0-9]+\s*$", re.I),
    re.compile(rf"^\s*(?P<cleaned>.+?){_EXTRA_FILE.pattern}", re.I),
]
RESOLUTION = re.compile(r"[0-9]{2}[0-9]+[ip]", re.IGNORECASE)
_BRACKETED = re.compile(r"^\[([^]]*)\]")
_YEAR = re.compile(r"(?:^|[ ._(\[-])((?:19|20)[0-9]{2})(?=[ ._)\]-]|$)")
_EPISODE = re.compile(r"[Ss]([0-9]{1,4})[ ._-]*[Ee]([0-9]{1,4})|\b([0-9]{1,2})x([0-9]{1,3})\b")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the copy goes and how Jellyfin learns it is a version: by its name, or merged."""

    target: Path | None  # the file to write (None: refused)
    method: str = "name"  # "name" or "merge"
    reason: str | None = None  # why not, in words for the job's page

    @classmethod
    def refused(cls, reason: str) -> Placement:
        return cls(None, reason=reason)


def label(label: str, profile: str, default_profile: str) -> str:
    """The version's name for a copy in ``profile``: PUBLISH_LABEL for the default profile,
    with the profile's name after it for another (``Optimized h264-720``: a resolution
    token such as ``720p`` would sort the copy before the original)."""
    if profile == default_profile:
        return label
    plain = re.sub(r"[^A-Za-z0-9 -]+", "-", RESOLUTION.sub(lambda m: m.group(0)[:-1], profile))
    return f"{label} {plain}"


def major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def is_video(path: Path) -> bool:
    return bool(VIDEO.search(path.name)) and not path.name.startswith(".")


def clean(name: str) -> str:
    """Jellyfin's CleanStringParser: the first clean string that matches, its ``cleaned``."""
    for pattern in CLEAN:
        if (match := pattern.match(name)) and match.group("cleaned"):
            return match.group("cleaned").strip()
    return name


def eligible(folder: str, stem: str, version: str) -> bool:
    """IsEligibleForMultiVersion: the file reads as a version of the folder's film."""
    if not stem.lower().startswith(folder.lower()):
        return False
    rest = clean(stem[len(folder) :].strip()).strip()
    marks = "-_." if major(version) >= 12 else "-"
    return not rest or rest[0] in marks or bool(_BRACKETED.match(rest))


def _chunks(text: str) -> list[tuple[int, int | str]]:
    """AlphanumericComparator's order: runs of digits by value, the rest ordinally."""
    parts = re.findall(r"\d+|\D+", text)
    return [(0, int(part)) if part.isdigit() else (1, part) for part in parts]


def version_order(stems: list[str]) -> list[str]:
    """The order Jellyfin gives versions: with a resolution token first (highest first),
    then the rest alphabetically; the first is primary unless one is the folder's name."""
    with_res = [s for s in stems if RESOLUTION.search(s)]
    rest = [s for s in stems if not RESOLUTION.search(s)]
    with_res.sort(key=_chunks)
    with_res.sort(key=lambda s: _chunks(RESOLUTION.search(s).group(0)), reverse=True)  # type: ignore[union-attr]
    return with_res + sorted(rest, key=_chunks)


def is_extra(path: Path) -> bool:
    return bool(_EXTRA_FILE.search(path.stem))


def year(stem: str) -> str | None:
    found = _YEAR.findall(stem)
    return found[-1] if found else None


def episode_key(stem: str) -> tuple[int, int] | None:
    match = _EPISODE.search(stem)
    if match is None:
        return None
    season, episode = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
    return int(season), int(episode)


def movie(
    original: Path, label: str, listing: list[Path], roots: list[Path], version: str
) -> Placement:
    """Where a film's copy goes next to ``original``; ``listing``: what its folder holds."""
    folder = original.parent
    if any(folder == root for root in roots):
        return Placement.refused(
            f"{original.name} lies loose in the library's folder {folder}: Jellyfin groups"
            " versions only for a film in a folder of its own, so a copy there would be a"
            " second film"
        )
    target = folder / f"{folder.name} - {label}.mp4"
    subfolders = [
        p.name
        for p in listing
        if p.is_dir() and not p.name.startswith(".") and not EXTRAS_FOLDERS.match(p.name)
    ]
    if subfolders:
        return Placement.refused(
            f"{folder} has a subfolder ({sorted(subfolders)[0]}): Jellyfin reads such a folder"
            " as a film in parts, not as versions"
        )
    videos = [p for p in listing if p.is_file() and is_video(p) and not is_extra(p)]
    stems = sorted({p.stem for p in videos if p != target} | {target.stem})
    for stem in stems:
        if not eligible(folder.name, stem, version):
            return Placement.refused(
                f"{stem!r} in {folder} is not named after its folder ({folder.name!r} then"
                " nothing, ' - ...' or '[...]'): Jellyfin would list every file there as a"
                " film of its own"
            )
    if len({year(stem) for stem in stems}) > 1:
        return Placement.refused(f"the files in {folder} name different years")
    first = folder.name if folder.name in stems else version_order(stems)[0]
    if first != original.stem:
        return Placement.refused(
            f"{first!r} would be the film's main version in Jellyfin, not the original"
            f" {original.stem!r} (the film would get a new id): name the original after its"
            " folder"
        )
    return Placement(target)


def episode(original: Path, label: str, listing: list[Path], version: str) -> Placement:
    """Where an episode's copy goes: beside it, grouped by name on 12, merged on 10.x."""
    key = episode_key(original.stem)
    if key is None:
        return Placement.refused(f"{original.name} has no season and episode number in its name")
    target = original.parent / f"{original.stem} - {label}.mp4"
    if major(version) < 12:
        return Placement(target, method="merge")
    same = {p.stem for p in listing if p.is_file() and is_video(p) and episode_key(p.stem) == key}
    first = version_order(sorted(same - {target.stem} | {target.stem}))[0]
    if first != original.stem:
        return Placement.refused(
            f"{first!r} would be the episode's main version in Jellyfin, not the original"
        )
    return Placement(target)
