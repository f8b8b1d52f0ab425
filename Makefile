# Benchmarks (docs/PERFORMANCE.md).  Each script prints one JSON object; `make bench` runs them all
# and keeps the output in bench/results/ (one file per script, plus the machine and load average).
PYTHON ?= python
RESULTS ?= bench/results

.PHONY: bench bench-translate bench-poll bench-stages bench-classify bench-search test test-fast lint

bench: bench-classify bench-stages bench-search bench-poll bench-translate
	@echo "results in $(RESULTS)/"

$(RESULTS):
	mkdir -p $(RESULTS)

bench-translate: | $(RESULTS)
	$(PYTHON) bench/translate.py | tee $(RESULTS)/translate.json

bench-poll: | $(RESULTS)
	$(PYTHON) bench/poll.py | tee $(RESULTS)/poll.json

bench-classify: | $(RESULTS)
	$(PYTHON) bench/classify.py | tee $(RESULTS)/classify.json

bench-stages: | $(RESULTS)
	$(PYTHON) bench/stages.py | tee $(RESULTS)/stages.json

bench-search: | $(RESULTS)
	$(PYTHON) bench/search.py | tee $(RESULTS)/search.json
	$(PYTHON) bench/search.py --cold | tee $(RESULTS)/search_cold.json

test: lint
	$(PYTHON) -m pytest

# the gates CI runs before the tests (configured in pyproject.toml)
lint:
	ruff check .
	mypy

# the developer loop: everything but the end-to-end tests marked slow (CI runs them all)
test-fast:
	$(PYTHON) -m pytest -m "not slow"
