"""The cache folder's names (``jobs/cache.py``): exactly those earlier versions wrote, so
an upgrade finds its files; what is ours and what is left alone."""

from __future__ import annotations

from pathlib import Path

from optimized_versions.jobs import cache


def test_a_jobs_files_keep_their_names_on_disk(tmp_path: Path) -> None:
    output = cache.output_path(tmp_path, "0b6e2f0c")
    assert output == tmp_path.resolve() / "0b6e2f0c.mp4"
    assert cache.partial(output).name == "0b6e2f0c.mp4.part"
    assert cache.uploading(str(output)).name == "0b6e2f0c.mp4.upload"
    assert cache.received(str(output)).name == "0b6e2f0c.mp4.received"
    assert cache.sidecar_folder(output).name == "0b6e2f0c.mp4.subs"
    assert cache.running_names(str(output)) == {
        "0b6e2f0c.mp4.part",
        "0b6e2f0c.mp4.upload",
        "0b6e2f0c.mp4.received",
        "0b6e2f0c.mp4.received.part",  # a worker host writing in place (mounted cache)
        "0b6e2f0c.mp4.subs",
    }


def test_what_is_ours_and_what_is_left_alone(tmp_path: Path) -> None:
    for name in ("a.mp4", "a.mp4.part", "a.mp4.upload", "a.mp4.received", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    for name in ("a.mp4.subs", "photos.mp4", "notes.subs.txt"):
        (tmp_path / name).mkdir()
    ours = {p.name for p in tmp_path.iterdir() if cache.is_ours(p)}
    assert ours == {"a.mp4", "a.mp4.part", "a.mp4.upload", "a.mp4.received", "a.mp4.subs"}
