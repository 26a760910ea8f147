# The README's two commands: `make book` and `make test`. Both are idempotent.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PROFILE ?= cpu

.PHONY: book test check install data browser unit clean-book mathjax slurm audit-smoke

install: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Fashion-MNIST from Debian's package (offline); skipped where apt is not available or not root.
data:
	@if [ ! -f $(FMNIST) ] && [ ! -f data/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null); \
	  else echo "Fashion-MNIST: run 'sudo apt-get install dataset-fashion-mnist' or let torchvision download it"; fi; fi

# MathJax 3 served from the build (no CDN): npm's registry package, unpacked into _vendor/mathjax (git-ignored)
MATHJAX := _vendor/mathjax/tex-mml-chtml.js
mathjax: $(MATHJAX)
$(MATHJAX):
	@command -v npm >/dev/null || { apt-get install -y -q npm >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q npm >/dev/null); }
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack -q mathjax@3.2.2 >/dev/null && tar xzf mathjax-3.2.2.tgz && \
	  mkdir -p $(CURDIR)/_vendor/mathjax && cp -r package/es5/. $(CURDIR)/_vendor/mathjax/ && rm -rf $$tmp
	@test -f $(MATHJAX) && echo "mathjax: served from _vendor/mathjax"

browser:
	@command -v chromium >/dev/null || { apt-get install -y -q chromium >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null); }

# a real single-node Slurm for the cluster tests (Debian packages; the tests start and stop the daemons)
slurm:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then bash scripts/install_slurm.sh; \
	  else echo "slurm: not root or no apt; the Slurm tests will skip (set MIUE_REQUIRE_SLURM=1 to fail instead)"; fi

# the reproducibility audit at the smoke profile: compute a small grid in a scratch store, re-run one run
audit-smoke: install data
	@tmp=$$(mktemp -d) && $(PY) -m miue.cli grid grid_check --profile smoke --runs $$tmp/runs --cache $$tmp/cache \
	  --no-progress >/dev/null && $(PY) -m miue.cli audit --sample 1 --profile smoke --runs $$tmp/runs \
	  --cache $$tmp/cache; status=$$?; rm -rf $$tmp; exit $$status

book: install data mathjax
	$(PY) scripts/build_book.py --profile $(PROFILE)
	@echo "book: open _build/html/index.html"

unit: install data
	$(PY) -m pytest -q -m "not notebook"

# everyday work: the unit tests without the slow ones (generation, victims, Slurm, notebooks)
check: install data
	$(PY) -m pytest -q -m "not notebook and not slow and not slurm"

test: install data browser mathjax slurm
	$(PY) -m pytest -q --durations=40
	$(PY) scripts/build_book.py --no-execute
	$(PY) scripts/check_render.py
	$(MAKE) --no-print-directory audit-smoke
