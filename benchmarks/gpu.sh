#!/usr/bin/env bash
# Every GPU figure in one run (at most 8 minutes on one H100 or H200), written as one JSON file.
# The logic is in benchmarks/gpu.py; `bash benchmarks/gpu.sh --help` lists the options.
#
#   bash benchmarks/gpu.sh --output "$OUT/gpu.json"     # on a lent GPU machine (its python3)
#   bash benchmarks/gpu.sh --dry-run                    # here: every step checked on the CPU
#
# Python: $PYTHON if set; else, for --dry-run, the repository's .venv/bin/python where it exists;
# else python3.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dry_run=0
for arg in "$@"; do
  if [[ $arg == --dry-run ]]; then dry_run=1; fi
done
if [[ -n ${PYTHON:-} ]]; then
  python=$PYTHON
elif [[ $dry_run == 1 && -x $repo/.venv/bin/python ]]; then
  python=$repo/.venv/bin/python
else
  python=python3
fi
# gpu.py keeps to its own 465 s budget and writes the JSON after every step; this is the backstop.
exec timeout --kill-after=10 "${GPU_SH_TIMEOUT:-480}" "$python" "$repo/benchmarks/gpu.py" "$@"
