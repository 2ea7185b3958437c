# The two commands a new user needs: `make demo` (the main job) and `make test` (everything CI checks).
# Both create .venv and install the project with its dev extra on first use.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pixelbert-installed
OUT ?= runs/demo

.PHONY: venv demo test docs readme lab clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)  ## run the embedded default end to end; results in $(OUT)
	$(BIN)/pixelbert-demo --out $(OUT)

test: $(STAMP)  ## sync check, README check, every notebook, pytest
	bash tools/test.sh

docs: $(STAMP)  ## render every notebook into docs/ (offline)
	$(BIN)/python tools/build_docs.py

readme: $(STAMP)  ## regenerate README.md from nbs/index.ipynb (offline)
	$(BIN)/python tools/make_readme.py

lab: $(STAMP)  ## open the chapters in JupyterLab
	$(BIN)/jupyter lab nbs/

clean:
	rm -rf _proc build dist *.egg-info
