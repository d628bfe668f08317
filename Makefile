# story_fsm: the two commands a new machine needs are `make run` and `make test`.
# Only python3 is assumed; everything else is installed here (into .venv, or Debian's
# graphviz for SVG diagrams when we are root), or degrades with a clear message.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_DB := story_fsm_demo.db
SAMPLE := examples/stories/lighthouse_cat.txt
PYTEST_ARGS ?=

.PHONY: help venv run test test-lowest lint typecheck diagrams graphviz bench bench-quick bench-profile clean

help:
	@echo "make run         run the bundled sample story through the loop (offline editor, SQLite)"
	@echo "make test        the whole test suite with coverage (SQLite and PostgreSQL)"
	@echo "make test-lowest the suite on the oldest dependency releases pyproject.toml admits"
	@echo "make lint        ruff + mypy"
	@echo "make diagrams    regenerate diagrams/ from the machine definition"
	@echo "make bench       benchmarks (bench/RESULTS.md); make bench-quick for a short run"
	@echo "make bench-profile  where a story's time goes (COMMITs, statements, the engine)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,diagrams]"
	@touch $(STAMP)

venv: $(STAMP)

# Graphviz's `dot` renders the SVG diagrams; without it they are skipped with a message.
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing graphviz (for SVG diagrams)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
	      || echo "graphviz could not be installed: SVG diagrams will be skipped"; \
	  else echo "graphviz (dot) not found and not root: SVG diagrams will be skipped"; fi; }

run: $(STAMP)
	@rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(VENV)/bin/story-fsm run $(SAMPLE) --db sqlite:///$(DEMO_DB) --editor offline

# pytest exits 5 when it collected no test: say so plainly instead of failing obscurely.
test: $(STAMP) graphviz
	@$(PY) -m pytest --cov=story_fsm --cov-report=term $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc

# The suite on the oldest release of each dependency that pyproject.toml admits (.ci/lowest.txt).
test-lowest:
	PIP_CONSTRAINT="$(CURDIR)/.ci/lowest.txt" $(MAKE) test VENV=.venv-lowest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

typecheck: $(STAMP)
	$(VENV)/bin/mypy

diagrams: $(STAMP) graphviz
	$(PY) -m story_fsm.diagrams diagrams

bench: $(STAMP)
	$(PY) bench/run.py

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick

bench-profile: $(STAMP)
	$(PY) bench/profile_loop.py

clean:
	rm -rf $(VENV) .venv-*/ .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* dist build
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
