# Set-up commands (see README): `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of PyTorch; install it first so the package's torch requirement is already met.
TORCH ?= torch==2.13.0

.PHONY: install demo test lint typecheck docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m ganforge demo --outdir runs/demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Lint: ruff's checks and formatting, then mypy (the typecheck target). `.ci/run` runs it.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Static types of the package: mypy with the [tool.mypy] settings of pyproject.toml.
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# The documentation site, built into site/ from README.md, ARCHITECTURE.md, docs/ and the docstrings; warnings
# are errors. NO_MKDOCS_2_WARNING silences a theme banner about future MkDocs releases.
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site
	@echo "Docs built into site/ (open site/index.html)"

clean:
	rm -rf $(VENV) runs
