# Two commands do all set-up on a fresh machine: `make demo` and `make test`. Both create the environment first.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV_LINK_MODE ?= copy

.PHONY: install demo test bench docs lint clean

install: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

demo: install
	$(UV) run --frozen --no-sync python -m alphapulse_assets.demo

test: install
	$(UV) run --frozen --no-sync pytest

bench: install
	$(UV) run --frozen --no-sync python bench/backfill.py

# docs/features.md and the README's configuration tables are generated; a test fails when one is stale.
docs: install
	$(UV) run --frozen --no-sync python -m alphapulse_assets.features.docs
	$(UV) run --frozen --no-sync python -m alphapulse_assets.settings --readme README.md
	$(UV) run --frozen --no-sync python -m alphapulse_serving.config --readme README.md

lint: install
	$(UV) run --frozen --no-sync ruff check .

clean:
	rm -rf .alphapulse .pytest_cache
