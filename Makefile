# The two commands a new user needs: `make demo` and `make test`.
# Both create the pinned venv once (.venv), build this package with colcon (build/, install/).
SHELL := /bin/bash
PY := .venv/bin/python
RUN := bash scripts/ros_env.sh
PYTEST_ARGS ?=

.PHONY: env build lint test demo clean shapes-default

env:
	@bash scripts/setup_env.sh

build: env
	@bash scripts/build.sh

lint: env
	@$(PY) -m ruff check .
	@$(PY) scripts/check_package_xml.py

test: build lint
	@$(RUN) $(PY) -m pytest test $(PYTEST_ARGS)

demo: build
	@$(RUN) $(PY) -m sgclip_ros.tools.demo

# Retrain the shipped models/shapes_default (about 30-40 minutes on 2 CPU cores).
shapes-default: env
	@bash training/ship_shapes_default.sh

clean:
	rm -rf build install log demo_out
