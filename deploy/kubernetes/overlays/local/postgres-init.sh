#!/bin/sh
# Creates the service's database and its two roles. The postgres image runs this once,
# on the first start with an empty data directory, against a server that listens on
# its Unix socket only. Values come from the container's environment: compose gives the
# passwords as OWNER_PASSWORD and SERVING_PASSWORD, the Kubernetes overlay as files that
# OWNER_PASSWORD_FILE and SERVING_PASSWORD_FILE name (its Secret, mounted).
#   owner:   owns the database and its schema; the migrations connect as this role
#   serving: what the running service connects as; reads and writes rows, never DDL
set -eu

owner_password=${OWNER_PASSWORD:-$(cat "${OWNER_PASSWORD_FILE:?set OWNER_PASSWORD or OWNER_PASSWORD_FILE}")}
serving_password=${SERVING_PASSWORD:-$(cat "${SERVING_PASSWORD_FILE:?set SERVING_PASSWORD or SERVING_PASSWORD_FILE}")}

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=database="$APP_DATABASE" \
    --set=owner="$OWNER_ROLE" --set=owner_password="$owner_password" \
    --set=serving="$SERVING_ROLE" --set=serving_password="$serving_password" <<'SQL'
CREATE ROLE :"owner" LOGIN PASSWORD :'owner_password';
CREATE ROLE :"serving" LOGIN PASSWORD :'serving_password';
-- UTF-8 whatever the server's default (a cluster initialised in the C locale would make it
-- SQL_ASCII, where a name with an accent, or the masking ellipsis, cannot be sent).
CREATE DATABASE :"database" OWNER :"owner" ENCODING 'UTF8' TEMPLATE template0;
-- Only these two roles (and the superuser) may connect.
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO :"owner", :"serving";
\connect :"database"
ALTER SCHEMA public OWNER TO :"owner";
GRANT USAGE ON SCHEMA public TO :"serving";
-- The migrations grant the serving role its tables; these defaults cover any table or
-- sequence the owner creates later, so a new table is never unreadable for a moment.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"serving";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"serving";
SQL
