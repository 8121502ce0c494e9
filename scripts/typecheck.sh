#!/usr/bin/env bash
# mypy --strict over the installed import root. The `remitnet` package is
# assembled from three folders (setup.py's package_dir), which mypy cannot
# follow through the editable install's import hook, so give it the same
# tree under build/mypy (hard links: cheap, and edits show through).
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/mypy/remitnet
rm -rf build/mypy
mkdir -p "$root"
cp -al protos/remitnet/. "$root/"
cp -al services "$root/services"
cp -al clients "$root/clients"
cp -al scripts tests build/mypy/
find build/mypy -name __pycache__ -prune -exec rm -rf {} +
cd build/mypy
MYPYPATH=scripts exec ../../.venv/bin/mypy --config-file ../../pyproject.toml remitnet scripts tests "$@"
