#!/usr/bin/env bash
# Everything CI runs: set-up, type check, then every test (unit, integration with the real
# ostree, real composes from Debian's packages), then the qemu end-to-end test (real boots).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run typecheck
npm test
npm run test:e2e
