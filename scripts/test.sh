#!/usr/bin/env bash
# The project's tests: real dockerd instances, sshd, audit rules, and the QEMU lab VM.
#   HARDLINE_SKIP_LAB=1 bash scripts/test.sh   # everything but the lab VM tests
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# lint first: any ruff or mypy finding fails the run (configuration in pyproject.toml)
python3 -m ruff check hardline benchmarks deploys
python3 -m mypy hardline benchmarks deploys
markers=()
[ -z "${HARDLINE_SKIP_LAB:-}" ] || markers=(-m "not lab")
exec python3 -m pytest tests -p no:cacheprovider -ra "${markers[@]}" "$@"
