#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server and ENSPACE_PG_DSN set, e.g.
#   bash .ci/with-postgres.sh .venv/bin/python -m pytest tests/stores
#   bash .ci/with-postgres.sh .venv/bin/python benchmarks/postgres.py
set -euo pipefail
source "$(dirname "$0")/postgres.sh"
start_postgres
export ENSPACE_REQUIRE_POSTGRES=1
"$@"
