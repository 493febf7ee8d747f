"""Worker tokens through the installed command: made once, hashed at rest, revocable."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import ALICE, StartApp
from served import COMMAND

from optimized_versions.keys import WORKER_TOKENS
from optimized_versions.nodes.tokens import TOKENS_FILE, TokenError, WorkerTokens


def worker_token(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATA_DIR": str(data)}
    return subprocess.run(
        [COMMAND, "worker-token", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_the_command_makes_lists_and_revokes_a_token(tmp_path: Path) -> None:
    made = worker_token(tmp_path, "create", "gaming-pc")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("ovsw_") and len(token) > 40
    tokens = WorkerTokens(tmp_path / TOKENS_FILE)
    assert tokens.check(token) == "gaming-pc"
    assert tokens.check(token + "x") is None and tokens.check("ovsw_guess") is None
    listed = worker_token(tmp_path, "list")
    assert listed.stdout.startswith("gaming-pc\tactive\tlast used ")
    assert "never" not in listed.stdout  # the check above was a use
    again = worker_token(tmp_path, "create", "gaming-pc")
    assert again.returncode == 1 and "already has a token: revoke it first" in again.stderr
    assert worker_token(tmp_path, "revoke", "gaming-pc").returncode == 0
    assert tokens.check(token) is None  # at once, from another process
    assert "gaming-pc\trevoked" in worker_token(tmp_path, "list").stdout
    fresh = worker_token(tmp_path, "create", "gaming-pc").stdout.strip()
    assert tokens.check(fresh) == "gaming-pc" and tokens.check(token) is None
    tokens.close()  # (reading the files while it is open would drop SQLite's POSIX locks)
    for path in tmp_path.iterdir():  # hashed at rest: no plain token in the files
        assert token.encode() not in path.read_bytes() and fresh.encode() not in path.read_bytes()


def test_names_and_unknown_workers_are_refused_with_the_reason(tmp_path: Path) -> None:
    tokens = WorkerTokens(tmp_path / TOKENS_FILE)
    with pytest.raises(TokenError, match="use letters, digits"):
        tokens.create("../etc")
    with pytest.raises(TokenError, match="no active token for worker 'laptop'"):
        tokens.revoke("laptop")
    missing = worker_token(tmp_path, "create")
    assert missing.returncode == 2 and "needs a NAME" in missing.stderr
    tokens.close()


async def test_worker_endpoints_take_only_a_live_worker_token(start_app: StartApp) -> None:
    client = await start_app(auth_failure_limit=100)
    tokens = client.app[WORKER_TOKENS]
    token = tokens.create("laptop")
    hello = await client.get("/worker/hello", headers={"Authorization": f"Bearer {token}"})
    assert hello.status == 200 and (await hello.json())["node"] == "laptop"
    for header in (f"Bearer {token}x", ALICE, f"Bearer {ALICE}", ""):
        resp = await client.get("/worker/hello", headers={"Authorization": header})
        assert resp.status == 401, header
        assert token not in await resp.text()
    phone = await client.get("/all-jobs", headers={"Authorization": token})
    assert phone.status == 401  # a worker token is no phone's token
    tokens.revoke("laptop")
    gone = await client.get("/worker/hello", headers={"Authorization": f"Bearer {token}"})
    assert gone.status == 401 and "unknown or revoked" in (await gone.json())["message"]
