#!/usr/bin/env bash
# mypy --strict over the tree as it is: pyproject's mypy_path names the three
# roots of the `remitnet` namespace (protos, services, clients) and scripts/.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mypy "$@"
