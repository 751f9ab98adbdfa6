#!/usr/bin/env bash
# Runs every benchmark in turn (about 25 minutes; the first run also creates
# bench/.venv-rigging, about 2 more). Extra arguments (e.g. --profile) go to each script.
# PYTHON picks the interpreter (default: the repo's .venv); BENCH_SKIP_RIGGING=1 leaves
# rigging out.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-$root/.venv/bin/python}"
export LITELLM_LOCAL_MODEL_COST_MAP=True

status=0
for bench in bench_import bench_overhead bench_concurrency bench_parse bench_plugin bench_native bench_cassettes bench_cases bench_page bench_judge; do
    echo "### $bench ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    "$python" "$here/$bench.py" "$@" || status=1
done
exit $status
