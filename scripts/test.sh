#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent, cached) and runs pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k exact -x
exec "$(dirname "$0")/python" -m pytest "$@"
