#!/usr/bin/env bash
# stack-orchestrate.sh COMMAND [ARGS...]: `orchestrate` against the stack's study storage.
#
# The commands that open a study get `--storage "$ORCHESTRATE_STORAGE"` (the PostgreSQL URL the
# compose file builds from .env), so nobody types the password; a --storage given on the command
# line comes later and wins. Other commands (validate, --help) pass through unchanged.
set -euo pipefail

case "${1:-}" in
    sweep | worker | status | report)
        command=$1
        shift
        exec orchestrate "$command" --storage "${ORCHESTRATE_STORAGE:?set ORCHESTRATE_STORAGE}" "$@"
        ;;
    *)
        exec orchestrate "$@"
        ;;
esac
