"""Wait reasons as data: the words each one renders (as the API has always said them) and
the metrics label each counts under, for a single reason and for several."""

from __future__ import annotations

import pytest

from optimized_versions.waits import Hold, Why, several

CPU = Hold.of(Why.CPU, cpu=91.4, limit=85.0)
GPU = Hold.of(Why.GPU, percent=95.0, limit=90.0)
SLOT = Hold.of(Why.NO_SLOT, device="cpu")


@pytest.mark.parametrize(
    ("hold", "words", "label"),
    [
        (CPU, "CPU above threshold (91% >= 85%)", "cpu"),
        (Hold.of(Why.MEMORY, memory=7.6), "memory low (8% available)", "memory"),
        (
            Hold.of(Why.DISK, free=1.25, needed=2.0),
            "disk floor: 1.2 GiB free in the cache folder, 2.0 GiB needed",
            "disk",
        ),
        (SLOT, "no free slot on cpu", "slot"),
        (Hold.of(Why.ALL_SLOTS, slots=2), "all 2 job slots are in use", "slot"),
        (GPU.on("nvidia:0"), "nvidia:0: GPU encoder busy (95% >= 90%)", "gpu"),
        (SLOT.fell_back("cpu"), "fell back to cpu: no free slot on cpu", "fallback"),
        (
            Hold.of(Why.DOWNLOADS_LIMIT, device="phone-1", limit=10),
            "device phone-1 has 10 output(s) not collected yet (MAX_CACHED_PER_USER)",
            "downloads_limit",
        ),
        (
            Hold.of(Why.SESSION_CAP, meaning="all NVENC sessions are in use", delay=30.0),
            "all NVENC sessions are in use (in 30 s)",
            "session_cap",
        ),
        (
            Hold.of(Why.LOCAL_OFF),
            "waits for a worker host (this server runs no jobs itself: LOCAL_JOBS)",
            "workers",
        ),
        # several: the words joined, the label of the most telling part
        (
            several([GPU.on("nvidia:0"), SLOT]),
            "nvidia:0: GPU encoder busy (95% >= 90%); no free slot on cpu",
            "gpu",
        ),
        (
            SLOT.plus(Hold.of(Why.WORKER_HOSTS, hosts="w1 is draining")),
            "no free slot on cpu; worker hosts: w1 is draining",
            "slot",
        ),
        (
            Hold.of(Why.ALL_SLOTS, slots=1).plus(Hold.of(Why.WORKER_HOSTS, hosts="w1 is lost")),
            "all 1 job slots are in use; worker hosts: w1 is lost",
            "slot",
        ),
    ],
)
def test_a_hold_renders_its_words_and_counts_under_its_label(
    hold: Hold, words: str, label: str
) -> None:
    assert str(hold) == words
    assert hold.label == label


def test_every_label_is_a_fixed_name() -> None:
    """A label never carries a figure or a device's name."""
    labels = {why.label for why in Why} - {""}
    assert all(label.replace("_", "").isalpha() for label in labels)
    assert labels >= {"slot", "cpu", "memory", "gpu", "disk", "downloads_limit", "fallback"}
