#!/usr/bin/env bash
# The main job on the built-in lab: set up, boot a fresh Debian 12 VM, verify (baseline),
# harden with pyinfra, harden again (no change), verify again. Reports go to reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh lab
exec python3 -m lab demo "$@"
