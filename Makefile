# Two commands for a newcomer: `make serve` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch + torchvision are installed together first so pip never picks a mismatched pair.
# Override on other platforms, e.g. `make serve TORCH="torch torchvision"`.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
PORT   ?= 5006
# Browsers on other hosts may open the page only when named here: `make serve ORIGINS="myhost:5006 localhost:5006"`.
ORIGINS ?= localhost:$(PORT) 127.0.0.1:$(PORT)
export VISIONLENS_HOME ?= $(CURDIR)/.visionlens

.PHONY: install serve test browser bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $@

install: $(STAMP)

# Debian's chromium drives the browser tests (Playwright with executable_path=/usr/bin/chromium).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "chromium is missing: install Debian's 'chromium' package (sudo apt-get install chromium)"; exit 1; fi; }

serve: install
	$(BIN)/visionlens demo --if-missing
	$(BIN)/panel serve apps/browse.py --port $(PORT) --num-threads 4 $(foreach o,$(ORIGINS),--allow-websocket-origin=$(o))

test: install browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

bench: install browser
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .visionlens
