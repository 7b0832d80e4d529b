# pakr: every target bootstraps .venv from nothing (Python 3.11 is all a machine needs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test-js-client web-demo demo test test-fast lint docs proto bench faults fuzz soak byzantine wheel sbom audit clean venv lock deploy-test

SOAK_SECONDS ?= 600
SOAK_ARGS ?=

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[node,dev,docs,examples]' --config-settings editable_mode=strict
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/pakr demo
	@echo "The browser example (examples/web): make web-demo serves it and prints its URL."

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict -p pakr
	$(BIN)/lint-imports --no-cache

# The site (build/site); --strict fails on any broken link or API reference. (Not -q: that
# would hide the warnings --strict counts.)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: $(STAMP) lint docs
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/pytest -q -x -m "not postgres"

proto: $(STAMP)
	$(BIN)/python tools/genproto.py

bench: $(STAMP)
	$(BIN)/python bench/steps.py
	$(BIN)/python bench/node_throughput.py
	$(BIN)/python bench/recover_latency.py
	$(BIN)/python bench/web_recover.py
	$(BIN)/python bench/web_listener.py

faults: $(STAMP)
	PAKR_FAULTS=long $(BIN)/pytest -q tests/faults

# Chaos soak (3-of-5, r = 4, kills/restarts/SIGSTOPs, model checks): SOAK_SECONDS per store.
# SOAK_ARGS=--netns (root): every node in its own network namespace, links cut as well.
soak: $(STAMP)
	$(BIN)/python -m tests.soak.soak --seconds $(SOAK_SECONDS) --store sqlite $(SOAK_ARGS)
	$(BIN)/python -m tests.soak.soak --seconds $(SOAK_SECONDS) --store postgres $(SOAK_ARGS)

byzantine: $(STAMP)
	PAKR_BYZANTINE=long $(BIN)/pytest -q -p no:cacheprovider tests/byzantine

fuzz: $(STAMP)
	PAKR_FUZZ_EXAMPLES=10000 $(BIN)/pytest -q tests/security/test_fuzz_rpc.py

# Pin the servers' dependencies with hashes (deploy/requirements*.lock) from pyproject.toml.
lock: $(STAMP)
	$(BIN)/python tools/lock.py

# Build the image and run the Compose cluster for real (root, Docker; not part of `make test`).
deploy-test: $(STAMP)
	timeout --kill-after=120 3000 bash tools/deploy_test.sh

wheel: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

# CycloneDX SBOM of the wheel (dist/pakr.cdx.json), from a fresh venv holding only the wheel.
sbom: wheel
	$(BIN)/python tools/sbom.py --wheel $$(ls dist/pakr-*.whl) --out dist/pakr.cdx.json

# Known vulnerabilities in what the wheel installs; exit 2 says which packages went unaudited.
audit: sbom
	$(BIN)/python tools/audit.py --env build/sbom-env

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache *.egg-info

# TypeScript SDK, I/O half: npm packages from the lockfile, the client's unit tests (the
# cross-language and browser tests are pytest tests: tests/crosslang, tests/browser), and the
# browser example served against a local cluster (Ctrl-C stops the page; `pakr cluster down`).
JS_STAMP := js/node_modules/.installed
$(JS_STAMP): js/package-lock.json
	cd js && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)
test-js-client: $(JS_STAMP)
	cd js && npm run --silent test:client
test: test-js-client
web-demo: $(STAMP) $(JS_STAMP)
	$(BIN)/pakr cluster up --dir build/web-demo --detach >/dev/null
	cd js && node scripts/build-web.mjs --operator-key "$$(cat ../build/web-demo/operator.pub)"
	$(BIN)/python examples/web/server.py --cluster build/web-demo --port 8080

# TypeScript SDK, protocol core: typecheck (the whole package), the stubs' drift check and the
# core's unit tests (RFC 9496/9497/9106 vectors, the pakr-v2.json replay, Python-signed manifests).
.PHONY: test-js-core bench-js-core
test-js-core: $(JS_STAMP)
	cd js && npm run --silent typecheck && npm run --silent gen:check && npm run --silent test:core
test: test-js-core
# Bundle sizes with and without the Argon2 WASM; Argon2id WASM vs pure JS as a ratio.
bench-js-core: $(JS_STAMP)
	cd js && npm run --silent bench
bench: bench-js-core
