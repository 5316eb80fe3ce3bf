# The README's commands: `make run` and `make test` (plus `make bench`).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test bench venv clean

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lessonserver db upgrade
	exec $(VENV)/bin/lessonserver serve

test: $(STAMP)
	$(PY) -m tests.services prepare
	$(VENV)/bin/lessonserver images build
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m tests.services prepare
	$(VENV)/bin/lessonserver images build
	$(PY) -m bench

clean:
	rm -rf $(VENV) .lessonserver .test-artifacts
