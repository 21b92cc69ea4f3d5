#!/usr/bin/env bash
# Make sure what the test suite talks to is running: Redis, PostgreSQL (database `test`),
# headless Chromium with chromedriver, ffmpeg, a docker compose client (only its
# `config`: no engine), and for tests/asterisk SIPp and the runtime packages of the
# Asterisk build in shared/asterisk. Installs missing pieces with apt when run as root;
# otherwise says exactly what is missing and how to get it.
#
# Without an Asterisk the real-Asterisk suite is skipped (and says so at the end of the
# run); with CI=true it must run, so anything it lacks fails here already.
set -uo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_PORT=6379
failed=()
apt_updated=0

say() { printf 'ensure-test-services: %s\n' "$*"; }

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_install() {
    if ! can_install; then
        return 1
    fi
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
        apt_updated=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 50); do
        port_open "$1" && return 0
        sleep 0.2
    done
    return 1
}

ensure_redis() {
    port_open "$REDIS_PORT" && { say "redis: running on :$REDIS_PORT"; return; }
    command -v redis-server >/dev/null || apt_install redis-server
    if ! command -v redis-server >/dev/null; then
        failed+=("redis: not installed; install redis-server (apt-get install redis-server)")
        return
    fi
    mkdir -p /tmp/ct-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /tmp/ct-redis --logfile /tmp/ct-redis/redis.log >/dev/null
    if wait_port "$REDIS_PORT"; then say "redis: started on :$REDIS_PORT"
    else failed+=("redis: could not start; see /tmp/ct-redis/redis.log"); fi
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null || port_open "$PG_PORT"; }

ensure_postgres() {
    if ! pg_ready; then
        if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
            apt_install postgresql || true
        fi
        if ls /etc/postgresql/*/main >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null; then
            version=$(ls /etc/postgresql | sort -V | tail -1)
            pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
        fi
        for _ in $(seq 1 50); do pg_ready && break; sleep 0.2; done
    fi
    if ! pg_ready; then
        failed+=("postgresql: not running on $PG_HOST:$PG_PORT; install and start it (apt-get install postgresql)")
        return
    fi
    # A fresh Debian cluster uses password auth on TCP: give postgres a known password for tests.
    if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
        su postgres -c "psql -qAtc \"SELECT 1 FROM pg_roles WHERE rolname='postgres' AND rolpassword IS NULL\"" 2>/dev/null \
            | grep -q 1 && su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1
        su postgres -c "psql -qAtc \"SELECT 1 FROM pg_database WHERE datname='test'\"" 2>/dev/null | grep -q 1 \
            || su postgres -c "createdb test" >/dev/null 2>&1 || true
    fi
    say "postgresql: running on $PG_HOST:$PG_PORT"
}

ensure_chromium() {
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        apt_install chromium chromium-driver || true
    fi
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
        say "chromium: $(chromium --version 2>/dev/null | head -1)"
    else
        failed+=("chromium: missing; install chromium and chromium-driver (apt-get install chromium chromium-driver)")
    fi
}

ensure_ffmpeg() {
    command -v ffmpeg >/dev/null || apt_install ffmpeg || true
    if command -v ffmpeg >/dev/null; then say "ffmpeg: present"
    else failed+=("ffmpeg: missing; install it (apt-get install ffmpeg)"); fi
}

# tests/ops/test_compose.py checks docker-compose.yml with the compose client's own
# `config` (no Docker engine needed): the v2 plugin if present, else Debian's docker-compose.
ensure_compose() {
    if docker compose version >/dev/null 2>&1; then
        say "docker compose: $(docker compose version --short 2>/dev/null)"
        return
    fi
    command -v docker-compose >/dev/null || apt_install docker-compose || true
    if command -v docker-compose >/dev/null; then
        say "docker-compose: $(docker-compose version --short 2>/dev/null)"
    else
        failed+=("docker compose client: missing; install it (apt-get install docker-compose)")
    fi
}

ci() { case "${CI:-}" in 1|true|TRUE|yes) return 0 ;; *) return 1 ;; esac; }

# What tests/asterisk cannot have: a failure under CI, a notice otherwise.
asterisk_missing() {
    if ci; then failed+=("$1")
    else say "$1 (tests/asterisk will be skipped)"; fi
}

ensure_sipp() {
    command -v sipp >/dev/null || apt_install sip-tester || true
    if command -v sipp >/dev/null; then say "sipp: $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1)"
    else asterisk_missing "sipp: missing; install it (apt-get install sip-tester)"; fi
}

# The Asterisk tests/asterisk/pbx.py will find: $CALLTRACKER_TEST_ASTERISK, else
# shared/asterisk beside the checkout (or above it), else `asterisk` on PATH. The pytest
# fixture unpacks the tarball into .cache/asterisk/; this installs what it needs to run.
ensure_asterisk() {
    root=$(cd "$(dirname "$0")/.." && pwd)
    source="${CALLTRACKER_TEST_ASTERISK:-}"
    if [ -z "$source" ]; then
        dir=$root
        while [ "$dir" != / ]; do
            dir=$(dirname "$dir")
            if [ -d "$dir/shared/asterisk" ]; then source=$dir/shared/asterisk; break; fi
        done
    fi
    if [ -z "$source" ]; then
        if command -v asterisk >/dev/null; then say "asterisk: $(command -v asterisk)"; return; fi
        asterisk_missing "asterisk: none found; set CALLTRACKER_TEST_ASTERISK to an Asterisk 22 build (see tests/asterisk/pbx.py)"
        return
    fi
    if [ ! -e "$source" ]; then
        asterisk_missing "asterisk: CALLTRACKER_TEST_ASTERISK=$source does not exist"
        return
    fi
    [ -f "$source" ] && source=$(dirname "$source")
    packages="$source/DEBIAN-RUNTIME-PACKAGES"
    if [ -f "$packages" ]; then
        missing=()
        for pkg in $(grep -v '^#' "$packages"); do
            dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
        done
        if [ "${#missing[@]}" -gt 0 ]; then
            apt_install "${missing[@]}" || true
            still=()
            for pkg in "${missing[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || still+=("$pkg"); done
            if [ "${#still[@]}" -gt 0 ]; then
                asterisk_missing "asterisk: runtime packages missing: ${still[*]} (apt-get install ${still[*]})"
                return
            fi
        fi
    fi
    say "asterisk: $source"
}

ensure_redis
ensure_postgres
ensure_chromium
ensure_ffmpeg
ensure_compose
ensure_sipp
ensure_asterisk

if [ "${#failed[@]}" -gt 0 ]; then
    say "could not provide everything the tests need:"
    for f in "${failed[@]}"; do say "  - $f"; done
    exit 1
fi
