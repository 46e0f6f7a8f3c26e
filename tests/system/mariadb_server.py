"""A private MariaDB server for the system tests that stop and restart the database under a running cloud: its
own data folder and port on loopback, so the shared server on 3306 is never touched."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "mariadb-install-db"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateMariaDB:
    """`start()` (installing the data folder on first use), `kill()` (SIGKILL), `stop()`; `url` names a database
    `edgert` on it. Runs as root with grant tables off: only reachable on 127.0.0.1, for tests only."""

    def __init__(self, root: Path, port: Optional[int] = None):
        self.root = Path(root)
        self.data = self.root / "data"
        self.port = port or _free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.root / "mariadbd.log"
        self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/edgert"

    def _install(self) -> None:
        if shutil.which(INSTALL_DB) is None or not Path(MARIADBD).exists():
            raise RuntimeError("mariadb-server is not installed (`make sysdeps` installs it)")
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run([INSTALL_DB, "--no-defaults", f"--datadir={self.data}", "--user=root", "--skip-test-db",
                        "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 60.0) -> None:
        if not (self.data / "mysql").exists():
            self._install()
        cmd = [MARIADBD, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}", "--bind-address=127.0.0.1",
               f"--socket={self.root / 'mysqld.sock'}", f"--pid-file={self.root / 'mysqld.pid'}", "--user=root",
               "--skip-grant-tables", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=1",
               "--max-connections=500", "--skip-log-bin"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        import pymysql

        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}; see {self.log}")
            try:
                conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2)
                with conn.cursor() as cur:
                    cur.execute("CREATE DATABASE IF NOT EXISTS edgert CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                conn.close()
                return
            except pymysql.MySQLError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mariadbd on port {self.port} did not answer within {timeout:g} s; "
                                       f"see {self.log}") from None
                time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: the crash of the database host; InnoDB recovers its log on the next start."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
