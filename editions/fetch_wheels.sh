#!/usr/bin/env bash
# Download the wheels of editions/device-wheels.txt for the device machine (CPython 3.12,
# manylinux x86-64) into .whl/ (git-ignored), each without its dependencies: the list names
# every one the device lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -v '^#' editions/device-wheels.txt | xargs python3 -m pip download -q --no-deps \
  --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_26_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl
du -sh .whl
