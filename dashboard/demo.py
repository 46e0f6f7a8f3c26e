"""`python -m dashboard.demo`: the live demo, a cloud, two or three `synth:` devices in one city and the dashboard,
run as child processes, kept playing, and stopped in order.

Everything runs through the command lines a user would type (`cloud_svc serve`, `cloud_svc devices add`,
`edge_rt run`, `dashboard`), so this module imports neither deployable's internals; it reads the demo's database
through the cloud's query layer for its status line, as the dashboard does.

The plan: the first two devices stand 200 m apart and start their scenes together (a group), so when both play a
distress scene the cloud's fleet correlator (FLEET_RADIUS_M, FLEET_WINDOW_S) joins their events into a fleet
alert; the third stands 1.1 km away, beyond that radius, and plays on its own, a little later. A scene lasts
20-35 s of real-time audio; when every device of a group has finished (its outbox drained into the cloud), the
group starts its next round with new seeds, so the demo stays live until Ctrl-C.
"""
from __future__ import annotations

import argparse
import ctypes
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import yaml

if TYPE_CHECKING:
    from cloud_svc.store import Store

EPILOG = """examples:
  python -m dashboard.demo                         # http://127.0.0.1:8050/ until Ctrl-C; state in .demo/
  python -m dashboard.demo --port 8060 --devices 2
  python -m dashboard.demo --seconds 120 --dir /tmp/demo
"""

MARKER = ".edgert-demo"          # the --dir is wiped only when it holds this file (or is empty or absent)
HOST = "127.0.0.1"               # every child listens on loopback only
STATUS_S = 10.0                  # a status line this often
TICK_S = 0.25                    # the supervisor's loop period
START_TIMEOUT_S = 60.0           # the cloud and the dashboard must be serving within this
TAIL_CHARS = 3000                # of a failed child's log
# Stop bounds: an edge stops its capture, then waits up to its runtime.grace_s (10 s) for the cloud to ack its outbox.
EDGE_STOP_S = 15.0
DASHBOARD_STOP_S = 10.0
CLOUD_STOP_S = 20.0

# A scene lasts half a minute, about the edge's default heartbeat period: beat and keep health more often, so the
# Devices page shows each device's real-time factor and its history while the demo runs.
HEARTBEAT_S = 5.0
HEALTH_SAMPLE_S = 10.0

# The cloud's fleet correlation, pinned in the cloud config the demo writes, since the devices' geometry is
# chosen around it: the pair stands inside the radius, the third device outside.
FLEET_RADIUS_M = 500.0
FLEET_WINDOW_S = 10.0

CLOUD_LISTEN_RE = re.compile(r"^listening on \S+:(\d+)$", re.M)
DASHBOARD_URL_RE = re.compile(r"^dashboard: http://\S+:(\d+)/", re.M)
EARTH_RADIUS_M = 6_371_008.8
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Device:
    device_id: str
    lat: float
    lon: float
    place: str


@dataclass(frozen=True)
class Scene:
    title: str                   # what the status line says
    spec: str                    # the synth: scenario, without its seed


@dataclass(frozen=True)
class Group:
    """Devices that start each round together; round i gives devices[j] the scene rounds[i][j]."""
    devices: tuple[Device, ...]
    rounds: tuple[tuple[Scene, ...], ...]
    delay_s: float = 0.0         # the first round starts this long after the demo's devices are registered


CITY = "Berlin-Mitte"
# lamp-2 is 200 m east of lamp-1; lamp-3 1.1 km south-west of lamp-1 (780 m south, 780 m west).
LAMP_1 = Device("lamp-1", 52.52190, 13.41320, "Alexanderplatz")
LAMP_2 = Device("lamp-2", 52.52190, 13.41615, "Alexanderplatz east")
LAMP_3 = Device("lamp-3", 52.51489, 13.40168, "Fischerinsel")
MAP_CENTER = (52.51850, 13.40900)
MAP_ZOOM = 14

DISTRESS = Scene("distress (both)", "distress,dur=25")  # glass at 5 s, a shout at 8 s
PAIR = Group((LAMP_1, LAMP_2), (
    (DISTRESS, DISTRESS),
    # as scripted, only the distress round puts one label on both within FLEET_WINDOW_S (the model may still hear
    # one sound as another: a baby cry as a shout now and then makes a fleet alert too)
    (Scene("tour", "tour"), Scene("baby cry, siren", "dur=34,baby_cry@3,siren@31")),
    (Scene("baby cry, siren", "dur=30,baby_cry@4,siren@15"), Scene("glass, scream", "dur=30,glass_break@12,scream@16")),
))
SOLO = Group((LAMP_3,), (
    (Scene("siren, baby cry", "dur=30,siren@5,baby_cry@18"),),
    (Scene("scream, glass", "dur=30,scream@6,glass_break@20"),),
    (Scene("quiet", "quiet,dur=15"),),
    (Scene("tour", "tour"),),
), delay_s=8.0)


def plan(devices: int) -> tuple[Group, ...]:
    return (PAIR, SOLO) if devices == 3 else (PAIR,)


def distance_m(a: Device, b: Device) -> float:
    """Great-circle distance (haversine) between two devices."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


# ----------------------------------------------------------------------------------------------- child processes
def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # the C library the interpreter is linked with
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _child_setup() -> None:
    """Runs in each child before exec: SIGINT back to its default (a shell's background job inherits it ignored,
    and the dashboard stops on SIGINT), and SIGTERM to the child if the demo itself dies (even by SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGTERM))


class Child:
    """One child process in a session of its own (so the terminal's Ctrl-C reaches only the demo, which stops the
    children in order), with stdout and stderr appended to one log file."""

    def __init__(self, name: str, log: Path, cwd: Path, env: dict[str, str]):
        self.name, self.log, self.cwd, self.env = name, log, cwd, env
        self.proc: Optional[subprocess.Popen] = None
        self._offset = 0             # where this run's output starts in the log
        self._swept = False

    def start(self, cmd: Sequence[str], header: str = "", env: Optional[dict[str, str]] = None) -> None:
        with open(self.log, "ab") as out:
            if header:
                out.write(f"==== {time.strftime('%H:%M:%S')} {header}\n".encode())
                out.flush()
            self._offset = out.tell()
            self._swept = False
            self.proc = subprocess.Popen(list(cmd), cwd=self.cwd, env=env or self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_child_setup)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.poll() is None

    def poll(self) -> Optional[int]:
        """The exit status once it has exited (its process group then swept of anything it left), else None."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is not None and not self._swept:
            self._sweep()
        return rc

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL to its whole process group, then reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self.poll()

    def _sweep(self) -> None:
        # The child led its own process group; anything of it still alive there would be an orphan. Only once, as
        # it is reaped: later its number could be a new process's.
        assert self.proc is not None
        self._swept = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def output(self) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(self._offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = TAIL_CHARS) -> str:
        return self.output()[-chars:]


class Edge(Child):
    def __init__(self, device: Device, log: Path, cwd: Path, env: dict[str, str]):
        super().__init__(device.device_id, log, cwd, env)
        self.device = device
        self.scene: Optional[Scene] = None
        self.done = True             # its last run ended well (or it has not run yet)


# ----------------------------------------------------------------------------------------------------- the demo
class DemoFailed(Exception):
    """A child exited or stopped answering while it should have been running."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while the demo was still starting."""


class Demo:
    def __init__(self, folder: Path, port: int, devices: int, seconds: Optional[float]):
        self.folder, self.port, self.seconds = folder, port, seconds
        self.groups = plan(devices)
        self.t0 = time.monotonic()
        self.db_url = f"sqlite:///{folder / 'cloud.db'}"
        self.clips = folder / "clips"
        self.logs = folder / "logs"
        self.env = _child_env()
        self.cloud = Child("cloud", self.logs / "cloud.log", folder, self.env)
        self.dashboard = Child("dashboard", self.logs / "dashboard.log", folder, self.env)
        self.edges = {d.device_id: Edge(d, self.logs / f"{d.device_id}.log", folder, self.env)
                      for g in self.groups for d in g.devices}
        self.rounds = [0 for _ in self.groups]     # rounds each group has started
        self.next_round = [0.0 for _ in self.groups]
        self.tokens: dict[str, str] = {}
        self.cloud_target = ""
        self.url = ""
        self.store: Optional[Store] = None
        self.signals: list[str] = []

    # ----------------------------------------------------------------------------------------------- output
    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:5.1f} s] {msg}", flush=True)

    def _on_signal(self, signum: int, _frame) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.signals.append(name)
        if len(self.signals) == 2:
            print(f"{name} again: killing what is left", flush=True)

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        failure: Optional[DemoFailed] = None
        try:
            self._start_cloud()
            self._register_devices()
            self._start_dashboard()
            reason = self._supervise()
        except DemoFailed as exc:
            failure = exc
        except Interrupted:
            reason = self.signals[0]
        finally:
            self._stop_all()
        if failure is not None:
            print(f"error: {failure}", file=sys.stderr, flush=True)
            return 1
        self.say(f"stopped ({reason}); {self._summary()}. The state stays in {self.folder} until the next demo.")
        return 0

    def _start_cloud(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        cfg = self.folder / "cloud.yaml"
        cfg.write_text(yaml.safe_dump({"fleet": {"radius_m": FLEET_RADIUS_M, "window_s": FLEET_WINDOW_S},
                                       "ingest": {"health_sample_s": HEALTH_SAMPLE_S}}))
        self.cloud.start([sys.executable, "-m", "cloud_svc", "serve", "--db", self.db_url, "--listen", f"{HOST}:0",
                          "--clips", str(self.clips), "--config", str(cfg), "--verify-workers", "1",
                          "--open-query"])  # loopback only: `python -m cloud_svc events` works without a token
        port = self._wait_for(self.cloud, CLOUD_LISTEN_RE, "listening on HOST:PORT")
        self.cloud_target = f"{HOST}:{port}"
        self.say(f"cloud: serving on {self.cloud_target} (database {self.db_url}, clips {self.clips}, one "
                 f"verification worker; fleet alerts when devices within {FLEET_RADIUS_M:g} m hear the same label "
                 f"within {FLEET_WINDOW_S:g} s)")
        from cloud_svc.store import Store  # the schema exists now: serve migrated it before listening

        self.store = Store.open(self.db_url)

    def _register_devices(self) -> None:
        procs = {d: subprocess.Popen([sys.executable, "-m", "cloud_svc", "devices", "add", d, "--db", self.db_url],
                                     cwd=self.folder, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                     preexec_fn=_child_setup)
                 for d in self.edges}
        try:
            for d, p in procs.items():
                try:
                    out, _ = p.communicate(timeout=START_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    raise DemoFailed(f"`cloud_svc devices add {d}` did not finish within {START_TIMEOUT_S:g} s"
                                     ) from None
                if p.returncode != 0 or not out.strip():
                    raise DemoFailed(f"`cloud_svc devices add {d}` exited with {p.returncode}:\n{out[-TAIL_CHARS:]}")
                self.tokens[d] = out.strip().splitlines()[-1]  # the DESIGN contract: the token is the last line
        finally:
            for p in procs.values():  # the others, when one failed
                if p.poll() is None:
                    p.kill()
                    p.communicate()
        first = self.groups[0].devices[0]
        where = "; ".join(f"{e.device.device_id} at {e.device.lat:.5f}, {e.device.lon:.5f} ({e.device.place}"
                          + (f", {distance_m(first, e.device):.0f} m from {first.device_id})"
                             if e.device is not first else ")") for e in self.edges.values())
        self.say(f"devices registered in {CITY}: {where}")
        now = time.monotonic()
        self.next_round = [now + g.delay_s for g in self.groups]

    def _start_dashboard(self) -> None:
        cfg = self.folder / "dashboard.yaml"
        cfg.write_text(yaml.safe_dump({"map": {"center": list(MAP_CENTER), "zoom": MAP_ZOOM}}))
        self.dashboard.start([sys.executable, "-m", "dashboard", "--config", str(cfg), "--db", self.db_url,
                              "--clips", str(self.clips), "--host", HOST, "--port", str(self.port)])

    def _wait_for(self, child: Child, pattern: re.Pattern, what: str) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            m = pattern.search(child.output())
            if m:
                return int(m.group(1))
            rc = child.poll()
            if rc is not None:
                raise DemoFailed(f"the {child.name} exited with {rc} before it printed {what}; the end of "
                                 f"{child.log}:\n{child.tail()}")
            if self.signals:
                raise Interrupted
            if time.monotonic() > deadline:
                raise DemoFailed(f"the {child.name} did not print {what} within {START_TIMEOUT_S:g} s; the end of "
                                 f"{child.log}:\n{child.tail()}")
            time.sleep(0.05)

    # ------------------------------------------------------------------------------------------ supervise
    def _supervise(self) -> str:
        """Keeps the devices playing until a signal or --seconds; returns why it ended."""
        last_status = time.monotonic()
        dashboard_deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.signals:
                return self.signals[0]
            now = time.monotonic()
            if self.seconds is not None and now - self.t0 >= self.seconds:
                return f"--seconds {self.seconds:g}"
            for child in (self.cloud, self.dashboard):
                rc = child.poll()
                if rc is not None:
                    raise DemoFailed(f"the {child.name} exited with {rc}; the end of {child.log}:\n{child.tail()}")
            for edge in self.edges.values():
                if edge.done:
                    continue
                rc = edge.poll()
                if rc is None:
                    continue
                if rc != 0:
                    playing = edge.scene.title if edge.scene else "?"
                    raise DemoFailed(f"edge {edge.name} exited with {rc} playing {playing}; the end of {edge.log}:\n"
                                     f"{edge.tail()}")
                edge.done = True
            for i, group in enumerate(self.groups):
                if now >= self.next_round[i] and all(self.edges[d.device_id].done for d in group.devices):
                    self._start_round(i)
            if not self.url:
                self._probe_dashboard(dashboard_deadline)
            if now - last_status >= STATUS_S:
                last_status = now
                self.say(self._status())
            time.sleep(TICK_S)

    def _start_round(self, i: int) -> None:
        group = self.groups[i]
        n = self.rounds[i]
        scenes = group.rounds[n % len(group.rounds)]
        self.rounds[i] += 1
        for device, scene in zip(group.devices, scenes):
            edge = self.edges[device.device_id]
            seed = 100 * n + list(self.edges).index(device.device_id) + 1  # new clips each round and device
            source = f"synth:{scene.spec},seed={seed}"
            env = dict(self.env, EDGE_RT__CLOUD__TOKEN=self.tokens[device.device_id],  # off the command line
                       EDGE_RT__CLOUD__HEARTBEAT_S=f"{HEARTBEAT_S:g}")
            edge.start([sys.executable, "-m", "edge_rt", "-v", "run", "--source", source, "--realtime",
                        "--cloud", self.cloud_target, "--device-id", device.device_id,
                        "--lat", f"{device.lat:.5f}", "--lon", f"{device.lon:.5f}",
                        "--spool", str(self.folder / "spool" / device.device_id), "--threads", "1"],
                       header=f"round {n + 1}: {source}", env=env)
            edge.scene, edge.done = scene, False

    def _probe_dashboard(self, deadline: float) -> None:
        m = DASHBOARD_URL_RE.search(self.dashboard.output())
        if m:
            base = f"http://{HOST}:{m.group(1)}"
            try:
                with urllib.request.urlopen(base + "/", timeout=2) as r:
                    ready = r.status == 200
            except (urllib.error.URLError, OSError):
                ready = False
            if ready:
                self.url = base + "/"
                print(f"==> open {self.url}  (Map: {CITY}, events and alerts, clusters split as you zoom in; "
                      f"Events: click one for its audio, spectrogram and review buttons; Devices: their health; "
                      f"Ctrl-C stops everything)", flush=True)
                return
        if time.monotonic() > deadline:
            raise DemoFailed(f"the dashboard did not answer GET / with 200 within {START_TIMEOUT_S:g} s; the end of "
                             f"{self.dashboard.log}:\n{self.dashboard.tail()}")

    def _counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(events per device, alerts per kind) in the demo's database."""
        if self.store is None:
            return {}, {}
        q = self.store.queries
        events = {d.device_id: d.events for d in q.list_devices()}
        alerts: dict[str, int] = {}
        for a in q.list_alerts(limit=1_000_000):
            alerts[a.kind] = alerts.get(a.kind, 0) + 1
        return events, alerts

    def _summary(self) -> str:
        try:
            events, alerts = self._counts()
        except Exception as exc:  # the status is a courtesy: a busy database must not end the demo
            return f"(status unavailable: {exc})"
        per = ", ".join(f"{d} {n}" for d, n in events.items())
        return (f"{sum(events.values())} events stored ({per}); alerts: {alerts.get('device', 0)} device, "
                f"{alerts.get('fleet', 0)} fleet")

    def _status(self) -> str:
        playing = " | ".join(f"{e.name}: {e.scene.title if e.scene and not e.done else '-'}"
                             for e in self.edges.values())
        return f"{self._summary()}; playing {playing}"

    # -------------------------------------------------------------------------------------------- stop
    def _stop_all(self) -> None:
        """Edges first (each acks its outbox into the cloud on the way out), then the dashboard, then the cloud;
        each stage bounded, stragglers killed."""
        t = time.monotonic()
        stages = ((list(self.edges.values()), signal.SIGINT, EDGE_STOP_S),
                  ([self.dashboard], signal.SIGINT, DASHBOARD_STOP_S),
                  ([self.cloud], signal.SIGTERM, CLOUD_STOP_S))
        if any(c.running for cs, _, _ in stages for c in cs):
            self.say("stopping: the devices (flushing their outboxes), then the dashboard, then the cloud")
        for children, sig, bound in stages:
            live = [c for c in children if c.running]
            for c in live:
                c.signal(sig)
            deadline = time.monotonic() + bound
            while any(c.running for c in live) and time.monotonic() < deadline and len(self.signals) < 2:
                time.sleep(0.05)
            for c in live:
                if c.running:
                    print(f"{c.name} did not stop within {bound:g} s of {signal.Signals(sig).name}: killed",
                          file=sys.stderr, flush=True)
                c.kill()
        if self.store is not None:
            self.store.close()
        if time.monotonic() - t > 0.5:
            self.say(f"all stopped in {time.monotonic() - t:.1f} s")


def _child_env() -> dict[str, str]:
    """This environment, with the tree the demo runs from first on the path, so the children run the same code."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"  # the logs show each line as it happens
    return env


def fresh_folder(folder: Path) -> bool:
    """Empties `folder` for a fresh demo (True when there was an earlier demo's state to wipe); refuses one that
    holds anything else."""
    wiped = False
    if folder.exists():
        if not folder.is_dir():
            raise SystemExit(f"error: {folder} is not a folder")
        if any(folder.iterdir()) and not (folder / MARKER).is_file():
            raise SystemExit(f"error: {folder} is not empty and was not made by the demo (no {MARKER}); refusing to "
                             f"wipe it: choose another --dir")
        wiped = any(folder.iterdir())
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `python -m dashboard.demo`, which wipes this folder at its next start\n")
    return wiped


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dashboard.demo", description=(
        "The live system on this machine: a cloud on SQLite, synth: devices at different places in one city, "
        "playing scenes with glass breaks, screams, sirens and crying babies in real time (two of them sometimes "
        "hear the same distress, which makes a fleet alert), and the dashboard over it all. Ctrl-C stops it."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8050, help="the dashboard's port (default 8050; 0 picks a free one)")
    ap.add_argument("--dir", default=".demo", help="the demo's database, clips, spools and logs; wiped at start "
                                                   "(default .demo)")
    ap.add_argument("--seconds", type=float, help="stop by itself after this many seconds (default: at Ctrl-C)")
    ap.add_argument("--devices", type=int, choices=(2, 3), default=3, help="how many devices (default 3)")
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise SystemExit(f"error: --port {args.port} is not a port")
    if args.seconds is not None and args.seconds <= 0:
        raise SystemExit("error: --seconds must be positive")
    folder = Path(args.dir).resolve()
    wiped = fresh_folder(folder)
    fresh = "the last demo's state wiped: every demo starts fresh" if wiped else "every demo starts fresh"
    print(f"live demo: a cloud, {args.devices} devices in {CITY} and the dashboard; state in {folder} ({fresh}), "
          f"logs in {folder / 'logs'}", flush=True)
    return Demo(folder, args.port, args.devices, args.seconds).run()


if __name__ == "__main__":
    sys.exit(main())
