#!/usr/bin/env bash
# The demo on embedded defaults: compose the example appliance and its next release from
# Debian's packages, sign and publish both, and print refs, commits, versions, sizes and deltas.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/demo.js "$@"
