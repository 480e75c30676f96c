# make test: set up the development host (idempotent) and run the whole suite.
# make demo: set up, then run the demo on the small model we ship.
PY := .venv/bin/python

.PHONY: setup test lint demo demo-record bench bench-quality bench-zoo clean-host

setup:
	bash scripts/setup_host.sh

lint: setup
	$(PY) -m ruff check adacache nodes tests benchmarks scripts __init__.py

test: setup
	$(PY) -m ruff check adacache nodes tests benchmarks scripts __init__.py
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_wan.py

# the calibrated plan on the zoo models and the demo (issue-13 targets), then the README's
# plan table from the results (scripts/doc_figures.py; tests/test_doc_figures.py checks it)
bench-zoo: setup
	$(PY) benchmarks/bench_quality.py --model hunyuan --focus
	$(PY) benchmarks/bench_quality.py --model cosmos --focus
	$(PY) benchmarks/bench_quality.py --model hunyuan --focus --steps 50 --hindsight 0
	$(PY) benchmarks/bench_quality.py --model demo --focus
	$(PY) scripts/doc_figures.py

bench-quality: setup
	$(PY) benchmarks/bench_quality.py

demo: setup
	$(PY) scripts/demo.py

# the demo on all four scenes; writes benchmarks/results/demo.json and regenerates the demo
# figures in README.md and docs/demo.md from it (tests/test_doc_figures.py checks they match)
demo-record: setup
	$(PY) scripts/demo.py --scenes static "slow drift" "fast motion" "camera pan" --record

clean-host:
	rm -rf .venv .host
