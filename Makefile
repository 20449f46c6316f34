# The three commands of the contract (see README.md): run, test, bench.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Real clients the tests drive (Claude Code), pinned in tests/clients/package-lock.json.
CLIENTS := tests/clients
CLIENTS_STAMP := $(CLIENTS)/node_modules/.installed
# The security scanner of tests/deploy (checkov) in a virtualenv of its own: it pins a boto3 older than ours.
SCANNER := var/tools/checkov
SCANNER_STAMP := $(SCANNER)/.installed

.PHONY: run test bench setup clients scanner clean

setup: $(STAMP)

# The editable install compiles protos/ into extproc/_proto (setup.py), so a .proto edit re-runs it.
# It builds with the venv's own grpcio-tools (the [build-system] requires of pyproject.toml, no build
# isolation): grpcio-tools requires the grpcio and protobuf versions it generates code for, so the
# generated modules always match the runtime installed beside them.
$(STAMP): pyproject.toml setup.py $(shell find protos -name '*.proto')
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet 'setuptools>=68' 'grpcio-tools>=1.70,<2'
	$(BIN)/pip install --quiet --no-build-isolation -e '.[test,envoy]'
	touch $(STAMP)

clients: $(CLIENTS_STAMP)

$(CLIENTS_STAMP): $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js and npm (Debian: apt-get install nodejs npm; .ci/run does)" >&2; exit 1; }
	cd $(CLIENTS) && npm ci --no-audit --no-fund --loglevel=error
	$(CLIENTS)/node_modules/.bin/claude --version
	touch $@

scanner: $(SCANNER_STAMP)

$(SCANNER_STAMP): tests/deploy/scanner-requirements.txt
	rm -rf $(SCANNER)
	$(PYTHON) -m venv $(SCANNER)
	$(SCANNER)/bin/pip install --quiet --disable-pip-version-check -r tests/deploy/scanner-requirements.txt
	touch $@

run: $(STAMP)
	$(BIN)/python -m devstack

test: $(STAMP) $(CLIENTS_STAMP) $(SCANNER_STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	@$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache $(CLIENTS)/node_modules
