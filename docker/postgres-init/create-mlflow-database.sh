#!/usr/bin/env bash
# Run by the postgres image once, when its volume is first initialised. The image itself creates
# $POSTGRES_DB (the Optuna study storage); MLflow gets its own database beside it, so neither
# tool's migrations ever meet the other's tables.
set -euo pipefail

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set name="${MLFLOW_DB:?set MLFLOW_DB to the MLflow database name}" <<'SQL'
CREATE DATABASE :"name";
SQL
