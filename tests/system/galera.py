"""A three-node MariaDB Galera cluster on loopback (Debian's mariadb-server and galera-4) for `make galera`, the
system tests and the benchmarks: start it, stop it, kill -9 one node, restart it, wait until it is Synced.

Each node lives in build/galera/node<i>/ (its my.cnf, datadir, socket, pid file and error.log; default_root
says where when the `mysql` user cannot reach the checkout) and has its own ports on 127.0.0.1: SQL 3310+i,
group communication 4570+i, IST 4580+i and SST (rsync) 4590+i. The nodes are plain
`mariadbd` processes in their own session, not under mariadbd-safe, so a killed node stays dead until it
is restarted: that is what the failure tests need. The first start bootstraps node 1 (`--wsrep-new-cluster`)
and lets the others join one at a time (each join is a full SST from a donor); a later start after `stop`
bootstraps from the node that Galera marked safe_to_bootstrap, or, after a crash of all three, from the node
with the highest recovered seqno.

    python tests/system/galera.py start|stop|status|kill N|restart N        (make galera / make galera-stop)
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

REPO = Path(__file__).resolve().parents[2]
# As root, the nodes run as Debian's `mysql` user with their folders owned by it: the rsync SST's receiving
# daemon, started by a root mariadbd, would drop to `nobody` and could not write the joiner's datadir.
RUN_AS = "mysql" if os.geteuid() == 0 else None


def searchable_by_others(path: Path) -> bool:
    """Every folder above `path` lets other users through (so RUN_AS can reach a folder made there)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents if p.exists())


def default_root() -> Path:
    """build/galera in the checkout; when RUN_AS could not reach it (a checkout under a private home), a folder
    of the system's temporary directory named after the checkout, so `make galera` and the tests still agree."""
    root = REPO / "build" / "galera"
    if RUN_AS is None or searchable_by_others(root):
        return root
    tag = hashlib.sha1(str(REPO).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"edgert-galera-{tag}"


DEFAULT_ROOT = default_root()
CLUSTER_NAME = "edgert-test"
MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"
RSYNC = "/usr/bin/rsync"
SST_SCRIPT = "/usr/bin/wsrep_sst_rsync"
# what each file above comes from, for the error that names the package to install
PACKAGE_OF = {MARIADBD: "mariadb-server", INSTALL_DB: "mariadb-server", PROVIDER: "galera-4", RSYNC: "rsync",
              SST_SCRIPT: "mariadb-server"}
RECOVERED_RE = re.compile(r"WSREP: Recovered position: ([0-9a-f-]+:-?\d+)")
RECOVER_TIMEOUT_S = 120.0  # for `mariadbd --wsrep-recover` to write the position (crash recovery included)
RECOVER_EXIT_S = 5.0  # for it to exit once it has


class GaleraError(Exception):
    """The cluster cannot be started or did not reach the state asked for; the message says why."""


@dataclass(frozen=True)
class Ports:
    """The port bases: node i (1-based) listens on base + i."""
    sql: int = 3310
    gcomm: int = 4570
    ist: int = 4580
    sst: int = 4590


@dataclass(frozen=True)
class Node:
    index: int
    dir: Path
    ports: Ports
    size: int

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def sql_port(self) -> int:
        return self.ports.sql + self.index

    @property
    def gcomm_port(self) -> int:
        return self.ports.gcomm + self.index

    @property
    def ist_port(self) -> int:
        return self.ports.ist + self.index

    @property
    def sst_port(self) -> int:
        return self.ports.sst + self.index

    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def cnf(self) -> Path:
        return self.dir / "my.cnf"

    @property
    def pid_file(self) -> Path:
        return self.dir / "mariadbd.pid"

    @property
    def log(self) -> Path:
        return self.dir / "error.log"

    @property
    def socket(self) -> Path:
        return self.dir / "mariadbd.sock"

    @property
    def grastate(self) -> Path:
        return self.datadir / "grastate.dat"

    def url(self, database: str = "") -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.sql_port}/{database}"

    def my_cnf(self, cluster_address: str) -> str:
        """The node's whole configuration (it is started with --defaults-file, so /etc/mysql is not read)."""
        provider_options = ";".join([
            f"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm_port}",
            f"ist.recv_addr=127.0.0.1:{self.ist_port}",
            "gcache.size=128M",             # big enough that a node down for a test rejoins by IST, not SST
            "evs.suspect_timeout=PT5S",     # the defaults, spelled out: a killed node leaves the view in ~5 s
            "evs.inactive_timeout=PT15S",
            "pc.wait_prim_timeout=PT30S",
        ])
        return "\n".join([
            "# written by tests/system/galera.py; rewritten at every start",
            "[mariadbd]",
            *([f"user={RUN_AS}"] if RUN_AS else []),
            f"datadir={self.datadir}",
            f"socket={self.socket}",
            f"pid-file={self.pid_file}",
            f"log-error={self.log}",
            "bind-address=127.0.0.1",
            f"port={self.sql_port}",
            "skip-log-bin",
            "binlog_format=ROW",
            "default_storage_engine=InnoDB",
            "innodb_autoinc_lock_mode=2",
            "innodb_flush_log_at_trx_commit=2",  # Galera's durability is the other nodes, not this fsync
            "innodb_buffer_pool_size=64M",
            "performance_schema=OFF",
            "max_connections=200",
            "wsrep_on=ON",
            f"wsrep_provider={PROVIDER}",
            f"wsrep_cluster_name={CLUSTER_NAME}",
            f"wsrep_cluster_address={cluster_address}",
            f"wsrep_node_name={self.name}",
            f"wsrep_node_address=127.0.0.1:{self.gcomm_port}",
            f"wsrep_node_incoming_address=127.0.0.1:{self.sql_port}",
            f"wsrep_sst_receive_address=127.0.0.1:{self.sst_port}",
            "wsrep_sst_method=rsync",
            f'wsrep_provider_options="{provider_options}"',
            "",
        ])


def missing_packages() -> Optional[str]:
    """None when the programs the cluster needs are installed, else which Debian packages are missing."""
    missing = sorted({pkg for path, pkg in PACKAGE_OF.items()
                      if not os.access(path, os.R_OK if path.endswith(".so") else os.X_OK)})
    if RUN_AS and not _user_exists(RUN_AS):
        missing = sorted(set(missing) | {"mariadb-server"})  # the package creates the `mysql` user
    if not missing:
        return None
    return (f"Debian packages missing for the Galera cluster: {' '.join(missing)} "
            f"(`make sysdeps` installs them, or apt-get install {' '.join(missing)})")


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def port_taken(port: int) -> bool:
    """True when something listens on 127.0.0.1:port (a bind would fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def read_grastate(path: Path) -> dict[str, str]:
    """grastate.dat as a dict ({} when the file is absent)."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


class GaleraCluster:
    """The cluster of `size` nodes under `root`. Every method is bounded by a timeout and raises GaleraError."""

    def __init__(self, root: Path = DEFAULT_ROOT, size: int = 3, ports: Ports = Ports()):
        if size < 1:
            raise ValueError(f"size must be >= 1, not {size}")
        self.root = Path(root)
        self.size = size
        self.ports = ports
        self.nodes = [Node(i, self.root / f"node{i}", ports, size) for i in range(1, size + 1)]
        self._procs: dict[int, subprocess.Popen] = {}  # the nodes this object launched, to see one die early

    # ------------------------------------------------------------------------------------------- queries
    def node(self, index: int) -> Node:
        if not 1 <= index <= self.size:
            raise ValueError(f"no node {index}: the nodes are 1..{self.size}")
        return self.nodes[index - 1]

    @property
    def cluster_address(self) -> str:
        return "gcomm://" + ",".join(f"127.0.0.1:{n.gcomm_port}" for n in self.nodes)

    def connect(self, index: int, database: Optional[str] = None, timeout: float = 3.0):
        """A PyMySQL connection (autocommit) to node `index` as root over TCP."""
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.node(index).sql_port, user="root", database=database,
                               autocommit=True, connect_timeout=max(1, int(timeout)),
                               read_timeout=max(1, int(timeout) * 10), write_timeout=max(1, int(timeout) * 10))

    def wsrep_status(self, index: int) -> Optional[dict[str, str]]:
        """The node's wsrep_% status variables, or None when it does not answer."""
        try:
            conn = self.connect(index)
        except Exception:  # noqa: BLE001 - any failure to connect means "not answering"
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep\\_%'")
                return {k: v for k, v in cur.fetchall()}
        except Exception:  # noqa: BLE001
            return None
        finally:
            conn.close()

    def is_synced(self, index: int, size: Optional[int] = None) -> bool:
        """Node `index` answers, is Synced and ready, in a Primary component of `size` nodes (None: any size)."""
        st = self.wsrep_status(index)
        return bool(st) and st.get("wsrep_cluster_status") == "Primary" and \
            st.get("wsrep_local_state_comment") == "Synced" and st.get("wsrep_ready") == "ON" and \
            (size is None or int(st.get("wsrep_cluster_size", "0")) == size)

    def answers(self) -> bool:
        """Every node answers and is Synced in a Primary component of all nodes."""
        return all(self.is_synced(n.index, self.size) for n in self.nodes)

    def pid(self, index: int) -> Optional[int]:
        """The pid of node `index`'s mariadbd when it runs, else None. Found by its command line, not its pid
        file: a joiner writes that only after its state transfer, and a killed node leaves a stale one."""
        want = f"--defaults-file={self.node(index).cnf}"
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if args[0] == MARIADBD and want in args and "--wsrep-recover" not in args and _alive(int(proc.name)):
                return int(proc.name)
        return None

    def running(self) -> list[int]:
        return [n.index for n in self.nodes if self.pid(n.index) is not None]

    def status(self) -> str:
        lines = []
        for n in self.nodes:
            st = self.wsrep_status(n.index)
            pid = self.pid(n.index)
            if st is None:
                what = "running, not answering" if pid else "down"
            else:
                what = (f"{st.get('wsrep_local_state_comment')}, cluster {st.get('wsrep_cluster_status')} of "
                        f"{st.get('wsrep_cluster_size')}")
            lines.append(f"{n.name}: 127.0.0.1:{n.sql_port} (gcomm {n.gcomm_port}, IST {n.ist_port}, "
                         f"SST {n.sst_port}) pid {pid or '-'}: {what}")
        return "\n".join(lines)

    def log_tail(self, index: int, lines: int = 25) -> str:
        log = self.node(index).log
        if not log.is_file():
            return f"(no {log})"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------------------------------- actions
    def start(self, timeout: float = 240.0) -> float:
        """Start the nodes that are down, bootstrapping when none is up; a no-op when all answer. Returns seconds."""
        t0 = time.monotonic()
        if self.answers():
            return 0.0
        why = missing_packages()
        if why:
            raise GaleraError(why)
        up = [n.index for n in self.nodes if self.is_synced(n.index)]
        for n in self.nodes:  # every port free before anything starts, rather than a half-started cluster
            if self.pid(n.index) is None:
                self._check_ports(n)
        if not up:
            if self.running():  # running, but not in a Primary component (a partition left over): start over
                self.stop(timeout=60)
            first = self._bootstrap_node()
            self._launch(first, bootstrap=True)
            self.wait_synced(first, size=1, timeout=self._left(t0, timeout))
            up = [first]
        for n in self.nodes:
            if n.index in up:
                continue
            if self.pid(n.index) is None:
                self._launch(n.index, bootstrap=False)
            # one join at a time: a donor serves one SST at a time, and a queued joiner would only wait
            self.wait_synced(n.index, timeout=self._left(t0, timeout))
        self.wait_size(self.size, timeout=self._left(t0, timeout))
        return time.monotonic() - t0

    def stop(self, timeout: float = 120.0) -> None:
        """Stop every node with SIGTERM (a clean shutdown), the last one last, so it is safe to bootstrap from."""
        t0 = time.monotonic()
        for n in reversed(self.nodes):
            pid = self.pid(n.index)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            self._wait_gone(n.index, pid, self._left(t0, timeout))

    def kill(self, index: int) -> int:
        """SIGKILL node `index` (a crash: no clean leave, grastate.dat keeps seqno -1). Returns the pid killed."""
        pid = self.pid(index)
        if pid is None:
            raise GaleraError(f"node{index} is not running")
        os.kill(pid, signal.SIGKILL)
        self._wait_gone(index, pid, 30.0)
        return pid

    def restart(self, index: int, timeout: float = 120.0) -> None:
        """Start node `index` again (it joins the running cluster) and wait until all nodes are Synced."""
        if self.pid(index) is not None:
            raise GaleraError(f"node{index} is still running")
        if not any(self.is_synced(n.index) for n in self.nodes if n.index != index):
            raise GaleraError(f"no other node is Synced in a Primary component for node{index} to join")
        self._launch(index, bootstrap=False)
        self.wait_synced(index, timeout=timeout)
        self.wait_size(self.size, timeout=timeout)

    def wait_synced(self, index: int, size: Optional[int] = None, timeout: float = 60.0) -> None:
        """Wait until node `index` is Synced in a Primary component of `size` nodes (None: any size). Raises
        GaleraError with the end of the node's log when it is not by `timeout`, or at once when it died."""
        deadline = time.monotonic() + timeout
        while not self.is_synced(index, size):
            proc = self._procs.get(index)
            if proc is not None and proc.poll() is not None:  # it died (a failed SST, a taken port): say so now
                raise GaleraError(f"node{index} exited with {proc.returncode} while starting; its log ends:\n"
                                  f"{self.log_tail(index)}")
            if time.monotonic() > deadline:
                raise GaleraError(f"node{index} not Synced in a cluster of {size or 'any number of'} nodes after "
                                  f"{timeout:.0f} s ({self._brief(self.wsrep_status(index))}); its log ends:\n"
                                  f"{self.log_tail(index)}")
            time.sleep(0.25)

    def wait_size(self, size: int, nodes: Optional[list[int]] = None, timeout: float = 60.0) -> None:
        """Wait until each of `nodes` (default: all) is Synced in a Primary component of exactly `size` nodes."""
        nodes = [n.index for n in self.nodes] if nodes is None else nodes
        deadline = time.monotonic() + timeout
        while not all(self.is_synced(i, size) for i in nodes):
            if time.monotonic() > deadline:
                raise GaleraError(f"nodes {nodes} not Synced in a cluster of {size} after {timeout:.0f} s:\n"
                                  f"{self.status()}")
            time.sleep(0.25)

    def ist_received(self, index: int, since: int = 0) -> Optional[bool]:
        """After a (re)join of node `index` whose log was `since` bytes long before: True when it caught up by
        IST (only the missing writesets), False when it took a full SST (a copy of the datadir), None when the
        log says neither. The rsync SST script logs which of the two it did."""
        text = self._log_since(index, since)
        if "rsync SST completed on joiner" in text:
            return False
        if "rsync IST completed on joiner" in text:
            return True
        return None

    def log_size(self, index: int) -> int:
        log = self.node(index).log
        return log.stat().st_size if log.is_file() else 0

    # ------------------------------------------------------------------------------------------- inside
    def _log_since(self, index: int, since: int) -> str:
        log = self.node(index).log
        if not log.is_file():
            return ""
        with log.open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    @staticmethod
    def _left(t0: float, timeout: float) -> float:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            raise GaleraError(f"the cluster did not start within {timeout:.0f} s")
        return left

    @staticmethod
    def _brief(st: Optional[dict[str, str]]) -> str:
        if not st:
            return "not answering"
        return (f"{st.get('wsrep_local_state_comment')}, {st.get('wsrep_cluster_status')} of "
                f"{st.get('wsrep_cluster_size')}")

    def _check_ports(self, node: Node) -> None:
        for what, port in (("SQL", node.sql_port), ("group communication", node.gcomm_port),
                           ("IST", node.ist_port), ("SST", node.sst_port)):
            if port_taken(port):
                raise GaleraError(f"{node.name}'s {what} port 127.0.0.1:{port} is taken by another process "
                                  f"(`ss -ltnp 'sport = :{port}'` says which); stop it, or give other port bases "
                                  f"(tests/system/galera.py --help)")

    def _own(self, node: Node) -> None:
        """Give the node's folder to RUN_AS, and check that RUN_AS can reach it at all."""
        if not RUN_AS:
            return
        import pwd

        pw = pwd.getpwnam(RUN_AS)
        for parent in reversed(node.dir.parents):
            st = parent.stat()
            if not (st.st_mode & stat.S_IXOTH or st.st_uid == pw.pw_uid):
                raise GaleraError(f"{parent} is not searchable by the `{RUN_AS}` user the nodes run as "
                                  f"(chmod o+x {parent}, or give --root a folder it can reach)")
        for path in [node.dir, *node.dir.rglob("*")]:
            os.lchown(path, pw.pw_uid, pw.pw_gid)

    def _init_datadir(self, node: Node) -> None:
        """A fresh datadir with root@localhost/127.0.0.1/::1 that log in without a password, as on port 3306."""
        node.datadir.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([INSTALL_DB, f"--defaults-file={node.cnf}", "--skip-test-db",
                              "--auth-root-authentication-method=normal", f"--datadir={node.datadir}"],
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise GaleraError(f"mariadb-install-db for {node.name} failed ({res.returncode}):\n"
                              f"{res.stdout[-2000:]}{res.stderr[-2000:]}")

    def _bootstrap_node(self) -> int:
        """Which node to bootstrap from: a fresh cluster → 1; after a clean stop → the one marked
        safe_to_bootstrap; after a crash of all → the one with the highest recovered seqno (marked safe)."""
        states = {n.index: read_grastate(n.grastate) for n in self.nodes}
        if not any(states.values()):
            return 1
        safe = [i for i, st in states.items() if st.get("safe_to_bootstrap") == "1"]
        if safe:
            return safe[0]
        seqnos = {}
        for n in self.nodes:
            if not states[n.index]:
                continue
            seqno = int(states[n.index].get("seqno", "-1"))
            if seqno < 0:
                position = self._recover_position(n)
                seqno = int(position.rsplit(":", 1)[1]) if position else -1
            seqnos[n.index] = seqno
        best = max(seqnos, key=lambda i: (seqnos[i], -i))
        path = self.node(best).grastate
        path.write_text(re.sub(r"safe_to_bootstrap:\s*0", "safe_to_bootstrap: 1", path.read_text()))
        return best

    def _recover_position(self, node: Node) -> Optional[str]:
        """`mariadbd --wsrep-recover`: 'uuid:seqno' of the last transaction the node's InnoDB committed. A node
        that crashed has seqno -1 in grastate.dat; started as it is, it would ask for a full SST."""
        self._write_cnf(node)
        self._own(node)
        log_before = self.log_size(node.index)
        # The position is read from the node's log as soon as it is there. mariadbd exits by itself after writing
        # it, but once in CI (2026-12-05) it wrote it at once and the wait for the command to end (its output
        # pipes included) then lasted the whole 120 s allowed. Now nothing waits on pipes, and the process is
        # given RECOVER_EXIT_S to exit, then killed, and always reaped before the node starts: it holds the
        # datadir's locks and the node's SQL port while it lives.
        proc = subprocess.Popen([MARIADBD, f"--defaults-file={node.cnf}", "--wsrep-recover"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        try:
            while True:
                exited = proc.poll() is not None
                found = RECOVERED_RE.findall(self._log_since(node.index, log_before))
                if found or exited:
                    break
                if time.monotonic() - t0 > RECOVER_TIMEOUT_S:
                    raise GaleraError(f"`mariadbd --wsrep-recover` of {node.name} wrote no position in "
                                      f"{RECOVER_TIMEOUT_S:.0f} s (its log: {node.log})")
                time.sleep(0.1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=RECOVER_EXIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return found[-1] if found and not found[-1].endswith(":-1") else None

    def _write_cnf(self, node: Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        node.cnf.write_text(node.my_cnf(self.cluster_address))

    def _launch(self, index: int, bootstrap: bool) -> None:
        node = self.node(index)
        self._check_ports(node)
        self._write_cnf(node)
        node.datadir.mkdir(parents=True, exist_ok=True)  # an empty joiner gets everything by SST
        self._own(node)
        if bootstrap and not node.grastate.exists() and not (node.datadir / "mysql").is_dir():
            self._init_datadir(node)
        node.pid_file.unlink(missing_ok=True)
        cmd = [MARIADBD, f"--defaults-file={node.cnf}"] + (["--wsrep-new-cluster"] if bootstrap else [])
        if not bootstrap and read_grastate(node.grastate).get("seqno", "0") == "-1":
            # a crashed node: tell Galera where its data ends, so that it asks for the missing writesets (IST)
            position = self._recover_position(node)
            if position:
                cmd.append(f"--wsrep-start-position={position}")
        with open(node.dir / "stdout.log", "ab") as out:
            # a session of its own: `make galera` returns while the node runs on, and Ctrl-C does not reach it
            self._procs[index] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                                  stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_gone(self, index: int, pid: int, timeout: float) -> None:
        proc = self._procs.get(index)
        if proc is not None and proc.pid == pid:  # our child: wait() reaps it
            try:
                proc.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                raise GaleraError(f"node{index} (pid {pid}) still runs {timeout:.0f} s after the signal") from None
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise GaleraError(f"node{index} (pid {pid}) still runs {timeout:.0f} s after the signal")
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    """The process runs (a zombie does not: a node started by an earlier `make galera` is not our child to
    reap, and in a container nothing may reap it)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@contextlib.contextmanager
def running_cluster(root: Path = DEFAULT_ROOT) -> Iterator[GaleraCluster]:
    """The cluster, started when it is not answering and stopped again on exit only when started here."""
    cluster = GaleraCluster(root)
    started_here = not cluster.answers()
    if started_here:
        cluster.start()
    try:
        yield cluster
    finally:
        if started_here:
            cluster.stop()


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="tests/system/galera.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="examples:\n  make galera            # start (idempotent)\n"
                                        "  make galera-stop       # stop cleanly\n"
                                        "  .venv/bin/python tests/system/galera.py kill 2\n"
                                        "  .venv/bin/python tests/system/galera.py restart 2\n")
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"where the nodes live (default {DEFAULT_ROOT})")
    for field, base in vars(Ports()).items():
        ap.add_argument(f"--{field}-base", type=int, default=base, metavar="N",
                        help=f"node i's {field.upper()} port is N+i (default {base})")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("start", help="start the nodes that are down (bootstrap when none is up)")
    sub.add_parser("stop", help="stop every node cleanly (SIGTERM)")
    sub.add_parser("status", help="each node's ports, pid and wsrep state")
    for name, what in (("kill", "SIGKILL one node"), ("restart", "start one node again (it rejoins)")):
        sub.add_parser(name, help=what).add_argument("node", type=int)
    args = ap.parse_args(argv)
    cluster = GaleraCluster(args.root, ports=Ports(args.sql_base, args.gcomm_base, args.ist_base, args.sst_base))
    try:
        if args.cmd == "start":
            if cluster.answers():
                print(f"Galera: {cluster.size} nodes answer already")
            else:
                print(f"starting a {cluster.size}-node Galera cluster in {cluster.root}", flush=True)
                seconds = cluster.start()
                print(f"Galera: {cluster.size} nodes Synced in {seconds:.1f} s")
            print(cluster.status())
        elif args.cmd == "stop":
            cluster.stop()
            print("Galera: stopped")
        elif args.cmd == "status":
            print(cluster.status())
        elif args.cmd == "kill":
            print(f"node{args.node}: killed pid {cluster.kill(args.node)}")
        elif args.cmd == "restart":
            cluster.restart(args.node)
            print(cluster.status())
    except GaleraError as exc:
        print(f"galera: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
