"""Where a copy may go beside its original, read from Jellyfin's naming rules
(Emby.Naming/Video/VideoListResolver.cs, NamingOptions.CleanStrings): pure, on real folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from optimized_versions.config import load_config
from optimized_versions.errors import ConfigError
from optimized_versions.publish import naming


def tree(root: Path, *names: str) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(b"x")
    return root


def place(root: Path, original: str, version: str = "10.11.11") -> naming.Placement:
    path = root / original
    listing = list(path.parent.iterdir())
    return naming.movie(path, "Optimized", listing, [root], version)


def test_a_film_in_its_own_folder_gets_a_version_named_after_the_folder(tmp_path: Path) -> None:
    tree(tmp_path, "Film (2020)/Film (2020).mkv", "Film (2020)/extras/", "Film (2020)/.hidden/")
    placement = place(tmp_path, "Film (2020)/Film (2020).mkv")
    assert placement.target == tmp_path / "Film (2020)" / "Film (2020) - Optimized.mp4"
    assert placement.reason is None and placement.method == "name"


def test_a_film_loose_in_the_library_root_is_refused(tmp_path: Path) -> None:
    tree(tmp_path, "Film (2020).mkv", "Other (2019).mkv")
    placement = place(tmp_path, "Film (2020).mkv")
    assert placement.target is None
    assert "loose in the library's folder" in str(placement.reason)


def test_a_mixed_folder_is_refused_with_the_file_that_breaks_it(tmp_path: Path) -> None:
    tree(tmp_path, "Films/Film (2020).mkv", "Films/Another Film (2018).mkv")
    placement = place(tmp_path, "Films/Film (2020).mkv")
    assert placement.target is None
    assert str(placement.reason).startswith("'Another Film (2018)' in ")
    assert "is not named after its folder ('Films'" in str(placement.reason)


def test_a_subfolder_makes_a_film_in_parts(tmp_path: Path) -> None:
    tree(tmp_path, "Film (2020)/Film (2020).mkv", "Film (2020)/Disc 2/")
    assert "subfolder (Disc 2)" in str(place(tmp_path, "Film (2020)/Film (2020).mkv").reason)


@pytest.mark.parametrize(
    ("original", "primary_ok"),
    [
        ("Film (2020) - 1080p.mkv", True),  # a resolution token sorts first
        ("Film (2020) - Bluray.mkv", True),  # "Bluray" < "Optimized"
        ("Film (2020) - Remux.mkv", False),  # "Optimized" < "Remux": the copy would be first
    ],
)
def test_the_original_must_stay_the_main_version(
    tmp_path: Path, original: str, primary_ok: bool
) -> None:
    tree(tmp_path, f"Film (2020)/{original}")
    placement = place(tmp_path, f"Film (2020)/{original}")
    assert (placement.target is not None) is primary_ok, placement.reason
    if not primary_ok:
        assert "would be the film's main version" in str(placement.reason)


def test_names_jellyfin_10_does_not_group_but_12_does(tmp_path: Path) -> None:
    tree(tmp_path, "Film (2020)/Film (2020).mkv", "Film (2020)/Film (2020).director.mkv")
    assert place(tmp_path, "Film (2020)/Film (2020).mkv", "10.11.11").target is None
    assert place(tmp_path, "Film (2020)/Film (2020).mkv", "12.0.0").target is not None


def test_episodes_are_merged_on_10_and_named_on_12(tmp_path: Path) -> None:
    tree(tmp_path, "Show/Season 1/Show S01E02.mkv", "Show/Season 1/Show S01E03.mkv")
    original = tmp_path / "Show/Season 1/Show S01E02.mkv"
    listing = list(original.parent.iterdir())
    old = naming.episode(original, "Optimized", listing, "10.11.11")
    new = naming.episode(original, "Optimized", listing, "12.0.0")
    assert old.method == "merge" and new.method == "name"
    assert new.target == original.with_name("Show S01E02 - Optimized.mp4")
    assert naming.episode(original.with_name("Pilot.mkv"), "Optimized", [], "12.0.0").target is None


def test_a_label_jellyfin_would_misread_is_refused_at_start(tmp_path: Path) -> None:
    for label, words in (("Optimized 720p", "resolution"), ("Sample", "sample")):
        with pytest.raises(ConfigError, match=words):
            load_config(None, {"PUBLISH_LABEL": label})
