#!/usr/bin/env bash
# Creates bench/.venv-rigging with rigging 3.3.5, the baseline the benchmarks compare with.
# Idempotent: does nothing when the venv is already complete. Exit status non-zero when
# it cannot be made (no registry, no venv module); the benchmarks then skip rigging.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-rigging"
marker="$venv/.rigging-3.3.5-ok"
python="${PYTHON:-python3}"

if [[ -f "$marker" ]]; then
    exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --retries 1 --timeout 30 "rigging==3.3.5"
LITELLM_LOCAL_MODEL_COST_MAP=True "$venv/bin/python" -c \
    "import rigging; assert rigging.__version__ == '3.3.5', rigging.__version__"
touch "$marker"
echo "created $venv (rigging 3.3.5)"
