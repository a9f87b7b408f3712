#!/usr/bin/env bash
# Create the virtual environment and install the pinned eegfm stack.
# Order matters: torch==2.13.0 first (local CPU wheel), so nothing later resolves a CUDA torch.
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}
start=$(date +%s)
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || { echo "install: eegfm needs Python 3.11; $PYTHON is $("$PYTHON" --version 2>&1)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# This machine's pip.conf names local index folders that may not exist; pip warns once per
# package about them. Drop exactly that line so real errors stay visible.
pip_() { "${PIP[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
echo "install: [1/4] pip and torch==2.13.0 (CPU)"
pip_ install --quiet pip==25.3
pip_ install --quiet torch==2.13.0
echo "install: [2/4] the locked stack (requirements/lock.txt)"
pip_ install --quiet -r requirements/lock.txt
echo "install: [3/4] eegfm itself (editable)"
pip_ install --quiet --no-deps --no-build-isolation -e .
# Bytecode now, so a shell with PYTHONDONTWRITEBYTECODE set (as container images often have)
# does not compile every eegfm module from source at each job, worker and test process start.
"$VENV/bin/python" -m compileall -q src
echo "install: [4/4] horovod (built from source, about 3 minutes the first time)"
if ! bash scripts/install_horovod.sh "$VENV/bin/python" > "$VENV/horovod-build.log" 2>&1; then
  echo "install: WARNING: horovod failed to build (log: $VENV/horovod-build.log)." >&2
  echo "install: everything else is installed and works; horovod tests will be skipped." >&2
fi
# The benchmark-only peers (`make bench-deps`) are installed --no-deps on purpose, so their
# unmet requirements (torchaudio, soundfile) are not conflicts of the pinned stack.
bench_peers=$(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' requirements/bench.txt | paste -sd'|')
conflicts=$("${PIP[@]}" check 2>&1 | grep -viE "^($bench_peers) " | grep -v '^No broken requirements' || true)
if [ -n "$conflicts" ]; then echo "$conflicts" >&2; exit 1; fi
echo "install: done in $(( $(date +%s) - start )) s; $(du -sh "$VENV" | cut -f1) in $VENV"
