"""Schemathesis against the served OpenAPI document, the console script as a real process:
no 5xx and every response as the document says (status, headers, content type, body)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from served import serve

ST = str(Path(sys.executable).parent / "st")


@pytest.mark.timeout(240)
async def test_the_api_keeps_its_document(tmp_path: Path) -> None:
    server = await serve(
        tmp_path,
        CPU_HIGH="0.01",  # jobs are created but never started: nothing is fetched
        SOURCE_ALLOW="127.0.0.1/32",  # and were one started, no other host is reached
        AUTH_FAILURE_LIMIT="0",  # the fuzzer's bad tokens would otherwise earn it 429s
        MAX_QUEUED_PER_USER="0",
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            ST, "run", f"{server.base}/openapi.json",
            "-H", f"Authorization: {server.token}",
            "--checks", "all",
            # the contract answers 400 to start-job on a job that is not waiting
            "--exclude-checks", "positive_data_acceptance", "--phases", "examples,coverage,fuzzing",
            "--max-examples", "25", "--workers", "2", "--seed", "1",
            "--max-time", "45", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=200)
    finally:
        await server.stop()
    report = output.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    tested = re.search(r"Tested: (\d+)", report)
    assert tested is not None and int(tested.group(1)) >= 10, report[-3000:]
