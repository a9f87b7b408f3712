#!/usr/bin/env bash
# Run pytest and turn "no tests collected" (exit 5) into a failure: a suite that ran nothing
# must never look green.
set -uo pipefail
PY=$1; shift
"$PY" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; treating as a failure" >&2
  exit 1
fi
exit "$rc"
