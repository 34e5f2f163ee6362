# xorest: `make demo` serves the API on a simulated pool; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8080

.PHONY: demo test soak bench docs fuzz system-deps clean

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# nginx, qemu-img, zstd, chromium (the docs page's browser test) and PostgreSQL's server
# (the store's tests and two instances on one database) are needed by the integration
# tests; install them when missing.
system-deps:
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v qemu-img >/dev/null 2>&1 || missing="$$missing qemu-utils"; \
	command -v zstd >/dev/null 2>&1 || missing="$$missing zstd"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing$$missing (tests needing them are skipped)"; fi; \
	fi

demo: $(STAMP)
	$(BIN)/xorest demo --listen 127.0.0.1:$(PORT)

# Test artefacts (the docs page's screenshot) are kept here.
ARTIFACTS_DIR ?= $(CURDIR)/build/artifacts
test: $(STAMP) system-deps
	ARTIFACTS_DIR=$(ARTIFACTS_DIR) $(BIN)/python -m pytest -q -p no:cacheprovider

# The OpenAPI document, as the running API serves it at /rest/v0/openapi.json.
docs: $(STAMP)
	@mkdir -p build
	$(BIN)/python -m xorest.api.openapi build/openapi.json

# Schemathesis over every operation of the document against gunicorn and the simulator, with
# many more examples than `make test` runs (16 positive and 6 negative per operation): per
# operation FUZZ_EXAMPLES positive ones (valid by the document) and FUZZ_NEGATIVE_EXAMPLES
# negative ones (each breaks it somewhere; they must get a 4xx). FUZZ_MODE: all, positive
# or negative.
FUZZ_EXAMPLES ?= 300
FUZZ_NEGATIVE_EXAMPLES ?= 150
FUZZ_MODE ?= all
fuzz: $(STAMP) system-deps
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_NEGATIVE_EXAMPLES=$(FUZZ_NEGATIVE_EXAMPLES) FUZZ_MODE=$(FUZZ_MODE) \
	  $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_schemathesis.py

soak: $(STAMP) system-deps
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; }
	cd bench && ../$(BIN)/python soak.py

bench: $(STAMP) system-deps
	cd bench && for b in bench_*.py; do ../$(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
