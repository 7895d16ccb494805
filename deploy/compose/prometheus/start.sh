#!/bin/sh
# Start compose's Prometheus with the configuration of this directory, completed at start:
#
#   start.sh TEMPLATE OUTPUT COMMAND...
#
# Prometheus reads no environment variable in its configuration file, so this writes
# TEMPLATE (prometheus.yml) to OUTPUT with the scrape interval of PROMETHEUS_SCRAPE_SECONDS
# (and the timeout and evaluation interval that go with it, as devstack/prometheus.py
# computes them), and without the bearer token when the API key file is empty (no
# PROMETHEUS_API_KEY_FILE: docker-compose.yml mounts /dev/null there). Then it becomes
# COMMAND (Prometheus, reading OUTPUT).
set -eu

[ $# -ge 3 ] || {
    echo "usage: $0 TEMPLATE OUTPUT COMMAND..." >&2
    exit 2
}
template=$1 output=$2
shift 2
# Where the template's jobs read the key (docker-compose.yml mounts it there).
api_key_file=$(sed -n 's/^    credentials_file: //p' "$template" | head -n 1)

seconds=${PROMETHEUS_SCRAPE_SECONDS:-15}
case $seconds in
'' | *[!0-9]* | 0*)
    echo "PROMETHEUS_SCRAPE_SECONDS must be a whole number of seconds above 0, not '$seconds'" >&2
    exit 2
    ;;
esac
# A scrape may take up to 10 s (Prometheus's default), never longer than the interval.
timeout=$((seconds < 10 ? seconds : 10))

script="s/^  scrape_interval: .*/  scrape_interval: ${seconds}s/
s/^  scrape_timeout: .*/  scrape_timeout: ${timeout}s/
s/^  evaluation_interval: .*/  evaluation_interval: ${seconds}s/"
if [ -z "$api_key_file" ] || [ ! -s "$api_key_file" ]; then
    # Each job's authorization block: the line naming it and its two lines.
    script="$script
/^  authorization:\$/,/^    credentials_file: /d"
fi
sed -e "$script" "$template" >"$output"
exec "$@"
