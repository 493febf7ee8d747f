"""The load benchmark, short: phones polling a full store while files download. It checks
that every poll is answered (no errors); the timings are the benchmark's business."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_load


async def test_phones_polling_a_full_store_get_every_answer(tmp_path: Path) -> None:
    tally = await bench_load.run(tmp_path, phones=10, seconds=5, jobs=1000, waiting=100)
    assert tally.errors == []
    assert len(tally.polls) >= 20, "every phone polled every 2 s"
    assert tally.downloaded > 0
    print(bench_load.report(tally, 5))
