"""Fixtures of weir's Python tests: scratch directories with JSON input files, the
independent Delta reader (deltalake), a tansu Kafka broker per test, and running Python
scripts in a child process (for SIGKILL and Ctrl-C)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import deltalake
import pyarrow as pa
import pytest


def write_events(directory: Path, name: str, ids: range) -> None:
    """Writes a JSON-lines file of events ``{"id", "user", "amount"}`` for ``ids``."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": i, "user": f"u{i % 3}", "amount": float(i)}) for i in ids]
    tmp = directory / f".{name}.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.rename(directory / name)


def source_sql(directory: Path, table: str = "events") -> str:
    """``CREATE TABLE`` of a JSON file source over ``directory``."""
    return (
        f"CREATE TABLE {table} (id BIGINT, user STRING, amount DOUBLE) "
        f"WITH (connector = 'file', path = '{directory}', format = 'json');"
    )


def read_delta(path: Path) -> pa.Table:
    """The Delta table at ``path`` as the independent reader sees it, sorted by ``id``."""
    table = deltalake.DeltaTable(str(path)).to_pyarrow_table()
    return table.sort_by("id")


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory that is also the working directory (default checkpoints go to
    ``.weir/checkpoints`` there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_script(script: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` with this interpreter in a child process."""
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def weir_cli() -> Path:
    """The ``weir`` binary the Rust tests built (next to the extension, in CARGO_TARGET_DIR)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/weir/target"))
    return target / "debug" / "weir"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A tansu Kafka broker on 127.0.0.1 with in-memory storage ($WEIR_TANSU, as the Rust
    Kafka tests start it); yields its bootstrap address and kills it after the test."""
    tansu = os.environ.get("WEIR_TANSU")
    assert tansu and os.path.isfile(tansu), "set WEIR_TANSU to the tansu binary: run scripts/test, which installs it"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("CLUSTER_ID", "STORAGE_ENGINE")}
    for _attempt in range(5):
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        log = open(tmp_path / "tansu.log", "ab")
        child = subprocess.Popen(
            [tansu, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 10
        while child.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        if child.poll() is None and time.monotonic() < deadline:
            try:
                yield f"127.0.0.1:{port}"
            finally:
                child.kill()
                child.wait()
                log.close()
            return
        child.kill()
        child.wait()
        log.close()
    pytest.fail(f"tansu does not start: {(tmp_path / 'tansu.log').read_text(errors='replace')[-2000:]}")
