#!/usr/bin/env bash
# Execute chapters under a profile and pack what the edition needs into one archive.
#
#   editions/run_on_device.sh PROFILE [CHAPTER ...]
#
# On the device machine (a GPU, no network): PROFILE=gpu, WHEELS=.whl (the carried wheels of
# editions/fetch_wheels.sh, installed first), LIB_GIT_COMMIT set to the commit the tree was
# copied from, OUT set by the device. On this CPU the same path runs with PROFILE=mini in the
# project's environment (no WHEELS): tests/test_editions.py does that.
#
# $OUT receives edition.tar.xz (the executed notebooks, run.json, every figure's plotly JSON:
# the standalone HTML pages are left out, the book rebuilds them) and log.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:?usage: editions/run_on_device.sh PROFILE [CHAPTER ...]}
shift
out=${OUT:?set OUT to the folder that receives the archive}
python=${PYTHON:-python3}
if [ -n "${WHEELS:-}" ]; then  # the device: install what its image lacks, then import from there
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
run=$(mktemp -d)/run
chapters=()
if [ $# -gt 0 ]; then chapters=(--chapters "$@"); fi
"$python" -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU', '| torch', torch.__version__)" | tee "$out/log.txt"
status=0
"$python" -m lib run --profile "$profile" --out "$run" --rerun "${chapters[@]}" 2>&1 \
  | { grep -v "Kernel is running over TCP" || true; } | tee -a "$out/log.txt" || status=$?
# pack whatever ran, also after a failure: the record says which chapters finished
if [ -f "$run/run.json" ]; then
  (cd "$run" && tar -cJf "$out/edition.tar.xz" run.json $(ls -d book 2>/dev/null) \
     $(find figures -name '*.json' 2>/dev/null)) || { [ "$status" -ne 0 ] || status=1; }
else
  echo "no run record: nothing ran, nothing to pack" | tee -a "$out/log.txt"
fi
ls -la "$out"
exit $status
