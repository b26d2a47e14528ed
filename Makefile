# The two commands a new user needs: `make demo` and `make test`.
# Both create the pinned venv once (.venv), build this package with colcon (build/, install/).
# `make test ROS_DISTRO=jazzy` does the same on ROS 2 Jazzy (.venv-jazzy, build-jazzy/,
# install-jazzy/) and runs the ROS-facing tests (pytest -m ros). Only a ROS_DISTRO given on the
# command line counts: a robot's sourced ROS_DISTRO (say humble) must not pick a wheel set.
SHELL := /bin/bash
DISTRO := $(if $(filter command line,$(origin ROS_DISTRO)),$(ROS_DISTRO),kilted)
export SGCLIP_DISTRO := $(DISTRO)
PY := $(if $(filter kilted,$(DISTRO)),.venv,.venv-$(DISTRO))/bin/python
RUN := bash scripts/ros_env.sh
PYTEST_ARGS ?= $(if $(filter kilted,$(DISTRO)),,-m ros)

.PHONY: env build lint test demo soak clean shapes-default

env:
	@bash scripts/setup_env.sh

build: env
	@flock /tmp/sgclip_ros-build.lock bash scripts/build.sh

lint: env
	@$(PY) -m ruff check .
	@$(PY) scripts/check_package_xml.py

test: build lint
	@$(RUN) $(PY) -m pytest test $(PYTEST_ARGS)

demo: build
	@$(RUN) $(PY) -m sgclip_ros.tools.demo

# 30 Hz into a real node with a lagging detector and live changes; fails unless RSS stays flat
# and every frame is accounted for (bench/soak.py). CI runs 2 minutes; the default is 10.
SOAK_MINUTES ?= 10
soak: build
	@mkdir -p bench_out
	@$(RUN) $(PY) -m bench.soak --minutes $(SOAK_MINUTES) --json bench_out/soak.json --check

# Retrain the shipped models/shapes_default (about 30-40 minutes on 2 CPU cores).
shapes-default: env
	@bash training/ship_shapes_default.sh

clean:
	rm -rf build install log build-jazzy install-jazzy log-jazzy .ros2_tools demo_out bench_out
