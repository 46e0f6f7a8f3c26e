"""Fixtures of the browser tests: headless Chromium and its network log, a cloud seeded by real edges, the
dashboard as a subprocess. The helpers behind them (and bulk_events for load tests) are in browser/harness.py."""
from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest
from browser.harness import NetworkLog, SeededCloud, missing_browser, run_dashboard, seed_cloud, start_chrome

from edgert import protos_build


@pytest.fixture(scope="session")
def _browser_installed() -> None:
    why = missing_browser()
    if why:
        pytest.fail(why)


@pytest.fixture
def browser(_browser_installed, tmp_path_factory) -> Iterator:
    """A fresh headless Chromium (selenium WebDriver) per test, 1400x1000, its own profile, performance log on."""
    driver = start_chrome(tmp_path_factory.mktemp("chrome-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def network_log(browser) -> NetworkLog:
    """Every URL the test's browser requests from now on: `.urls()`, `.non_local()` (what left the machine)."""
    return NetworkLog(browser)


@pytest.fixture(scope="session")
def seeded_cloud(tmp_path_factory) -> SeededCloud:
    """A SQLite cloud database and clip store that two real `synth:` edges (Berlin, Paris) streamed into through a
    real `cloud_svc serve`, verification finished, server stopped. Shared by the session: read it, or take
    `seeded_cloud.copy_to(tmp_path)` to write."""
    protos_build.build()  # no-op when current
    t0 = time.monotonic()
    cloud = seed_cloud(tmp_path_factory.mktemp("seeded-cloud"))
    print(f"\nseeded_cloud: {cloud.events} events {cloud.labels} in {time.monotonic() - t0:.1f} s")
    return cloud


@pytest.fixture
def dashboard_server(tmp_path) -> Iterator[Callable[..., str]]:
    """A factory: `dashboard_server(db_url, clips, extra_args=())` starts `python -m dashboard` on a free port
    and returns its base URL once `GET /` answers 200; every dashboard started is stopped (SIGINT) after the
    test, and one that does not exit fails it."""
    with ExitStack() as stack:
        def start(db_url: str, clips: str | Path, extra_args: Sequence[str] = (), **kw) -> str:
            """kw: run_dashboard's timeout (s to the first 200), stop_timeout (s after SIGINT), launcher."""
            return stack.enter_context(run_dashboard(db_url, str(clips), extra_args, log_dir=tmp_path / "dashboard",
                                                     **kw))

        yield start
