#!/bin/sh
# Create the Secrets that the Flight Tracker manifests reference, with fresh random
# values. Nothing secret is ever committed or rendered by kustomize: this script (or
# the equivalent commands in docs/kubernetes.md) is the only place values come from.
#
#   deploy/kubernetes/create-secrets.sh local        # PostgreSQL in the cluster
#   deploy/kubernetes/create-secrets.sh production   # database URLs from the environment
#   deploy/kubernetes/create-secrets.sh production-monitoring   # the same, and Prometheus's key
#
# A Secret that already exists is kept, so running it again changes nothing (and never
# replaces a password that a database was initialised with). To rotate one, delete it
# and run the script again (then update the database role to match).
#
# Read from the environment:
#   NAMESPACE (flight-tracker), KUBECTL (kubectl)
#   OPENSKY_CLIENT_ID, OPENSKY_CLIENT_SECRET: the OpenSky API client; unset, the
#       Secret holds empty values and the collector runs anonymously
#   SMTP_USERNAME, SMTP_PASSWORD: the mail server's login; unset, empty values (no login)
#   production only: <SERVICE>_DATABASE_URL and <SERVICE>_MIGRATION_DATABASE_URL (serving
#       role and owner role of each service's database) for USER_MANAGER, DATA_COLLECTOR,
#       ALERT_SYSTEM, ALERT_NOTIFIER and SLA_DETECTOR
#
# The pods read every value as a file of its Secret (the settings' <VARIABLE>_FILE).
set -eu

NAMESPACE=${NAMESPACE:-flight-tracker}
KUBECTL=${KUBECTL:-kubectl}
# Every scope of both APIs: the key printed at the end is the operator's own.
OPERATOR_SCOPES='"users:read", "users:pii", "users:write", "interests:read", "interests:write", "flights:read", "collection:run", "ops", "admin"'

usage() {
    echo "usage: $0 local|production|production-monitoring" >&2
    exit 2
}
[ $# -eq 1 ] || usage
case $1 in local | production | production-monitoring) overlay=$1 ;; *) usage ;; esac
# The overlays with a Prometheus that scrapes the services (its own, or the Operator's).
case $overlay in local | production-monitoring) scraped=1 ;; *) scraped='' ;; esac

# Values go to kubectl in files, never on its command line, where `ps` would show them.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

random_hex() {
    # 32 random bytes as hex: safe inside a URL, in any shell, without openssl.
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

sha256_hex() {
    if command -v sha256sum >/dev/null 2>&1; then
        printf '%s' "$1" | sha256sum | cut -d' ' -f1
    else
        printf '%s' "$1" | shasum -a 256 | cut -d' ' -f1
    fi
}

exists() {
    "$KUBECTL" --namespace "$NAMESPACE" get secret "$1" >/dev/null 2>&1
}

# create_secret NAME KEY VALUE [KEY VALUE...]: one Secret, each key from a file in $work.
create_secret() {
    name=$1
    shift
    mkdir "$work/$name"
    while [ $# -ge 2 ]; do
        printf '%s' "$2" >"$work/$name/$1"
        shift 2
    done
    for file in "$work/$name"/*; do
        set -- "$@" "--from-file=${file##*/}=$file"
    done
    "$KUBECTL" --namespace "$NAMESPACE" create secret generic "$name" "$@" >/dev/null
    echo "created Secret $name"
}

if ! "$KUBECTL" get namespace "$NAMESPACE" >/dev/null 2>&1; then
    echo "namespace $NAMESPACE does not exist: kubectl apply -f deploy/kubernetes/base/namespace.yaml" >&2
    exit 1
fi

# --- Databases ------------------------------------------------------------------------
# database_secrets SERVICE DB PACKAGE: the service's URLs, and for the local overlay the
# passwords its PostgreSQL is initialised with (both made together, so they agree).
database_secrets() {
    service=$1 db=$2 package=$3
    if exists "$service-database"; then
        echo "kept Secret $service-database"
        if [ "$overlay" = local ] && exists "$db-credentials"; then
            echo "kept Secret $db-credentials"
        fi
        return
    fi
    if [ "$overlay" = local ]; then
        if exists "$db-credentials"; then
            echo "$db-credentials exists without $service-database: delete it (and the $db volume) or create $service-database by hand" >&2
            exit 1
        fi
        owner=$(random_hex)
        serving=$(random_hex)
        create_secret "$db-credentials" postgres-password "$(random_hex)" \
            owner-password "$owner" serving-password "$serving"
        create_secret "$service-database" \
            url "postgresql://${package}_app:$serving@$db:5432/$package" \
            migration-url "postgresql://${package}_owner:$owner@$db:5432/$package"
    else
        prefix=$(echo "$package" | tr '[:lower:]' '[:upper:]')
        eval "url=\${${prefix}_DATABASE_URL:-}"
        eval "migration_url=\${${prefix}_MIGRATION_DATABASE_URL:-}"
        if [ -z "$url" ] || [ -z "$migration_url" ]; then
            echo "set ${prefix}_DATABASE_URL (serving role) and ${prefix}_MIGRATION_DATABASE_URL (owner role) to create $service-database" >&2
            exit 1
        fi
        create_secret "$service-database" url "$url" migration-url "$migration_url"
    fi
}

database_secrets user-manager user-db user_manager
database_secrets data-collector data-db data_collector
database_secrets alert-system alert-db alert_system
database_secrets alert-notifier notifier-db alert_notifier
database_secrets sla-detector sla-db sla_detector

# --- Between the services -------------------------------------------------------------
if exists grpc-auth; then
    echo "kept Secret grpc-auth"
else
    create_secret grpc-auth token "$(random_hex)"
fi

# --- Callers of the REST APIs -----------------------------------------------------------
# The services keep only the SHA-256 of each key; the operator's key is printed once, here.
# Prometheus gets a key of its own with the one scope /metrics needs (ops), kept in Secret
# prometheus-api-key, which its pod mounts (or the Operator reads for its scrapes).
if exists api-keys; then
    echo "kept Secret api-keys"
    if [ -n "$scraped" ]; then
        if ! exists prometheus-api-key; then
            echo "api-keys exists without prometheus-api-key: delete api-keys and run again (a new operator key is printed), or add a \"prometheus\" entry with scope ops to its api-keys.json and create prometheus-api-key (key api-key) by hand" >&2
            exit 1
        fi
        echo "kept Secret prometheus-api-key"
    fi
else
    api_key=$(random_hex)
    entries=$(printf '{"name": "operator", "sha256": "%s", "scopes": [%s]}' \
        "$(sha256_hex "$api_key")" "$OPERATOR_SCOPES")
    if [ -n "$scraped" ]; then
        if exists prometheus-api-key; then
            echo "prometheus-api-key exists without api-keys: delete it and run again" >&2
            exit 1
        fi
        prometheus_key=$(random_hex)
        entries="$entries, $(printf '{"name": "prometheus", "sha256": "%s", "scopes": ["ops"]}' \
            "$(sha256_hex "$prometheus_key")")"
        create_secret prometheus-api-key api-key "$prometheus_key"
    fi
    create_secret api-keys api-keys.json "[$entries]"
    echo "API key of the operator (every scope), shown only now: $api_key"
fi

# --- OpenSky ------------------------------------------------------------------------------
# Always made (the collector's worker mounts it): empty values mean anonymous access.
if exists opensky-credentials; then
    echo "kept Secret opensky-credentials"
else
    if [ -z "${OPENSKY_CLIENT_ID:-}" ] || [ -z "${OPENSKY_CLIENT_SECRET:-}" ]; then
        echo "no OPENSKY_CLIENT_ID/OPENSKY_CLIENT_SECRET: the collector runs anonymously"
        OPENSKY_CLIENT_ID='' OPENSKY_CLIENT_SECRET=''
    fi
    create_secret opensky-credentials \
        client-id "$OPENSKY_CLIENT_ID" client-secret "$OPENSKY_CLIENT_SECRET"
fi

# --- The mail server ----------------------------------------------------------------------
# Always made (the notifier mounts it): empty values mean no login (a relay that trusts
# the cluster, or the local overlay's mail catcher).
if exists smtp-credentials; then
    echo "kept Secret smtp-credentials"
else
    if [ -z "${SMTP_USERNAME:-}" ] || [ -z "${SMTP_PASSWORD:-}" ]; then
        echo "no SMTP_USERNAME/SMTP_PASSWORD: the notifier sends without logging in"
        SMTP_USERNAME='' SMTP_PASSWORD=''
    fi
    create_secret smtp-credentials username "$SMTP_USERNAME" password "$SMTP_PASSWORD"
fi
