#!/usr/bin/env bash
# Install the Debian 12 packages runfeed needs to build, run and test — only
# those that are missing. Never starts, stops or reconfigures system services:
# the local stack (scripts/stack.sh) runs its own PostgreSQL, Redis, ClickHouse
# and nginx on its own ports and data directories.
#
#   scripts/deps.sh            # build, run and test (`make run`, `make test`)
#   scripts/deps.sh --bench    # also the benchmark tools (`make bench`): BENCH_PACKAGES below
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench=0
for arg in "$@"; do
    case "$arg" in
        --bench) bench=1 ;;
        *) die "usage: $0 [--bench]" ;;
    esac
done

PACKAGES=(
    # services used by the local stack (binaries only; we run our own instances)
    postgresql-15 redis-server nginx
    # C libraries behind the Swift system-library targets
    libfcgi-dev libhiredis-dev libpq-dev libcurl4-openssl-dev libssl-dev pkg-config
    # stack scripts and integration tests (iproute2: `ss`, which names the process holding a busy port)
    make openssl curl ca-certificates iproute2 python3 python3-pytest python3-requests python3-yaml
    # headless browser for tests/integration/test_browser_demo.py (the demo page)
    chromium
    # what the Swift toolchain in /opt/swift needs to fetch packages, compile and
    # link on Debian 12 (already present wherever `swift build` works)
    git binutils libc6-dev libgcc-12-dev libstdc++-12-dev zlib1g-dev
    libedit2 libsqlite3-0 libncurses6 libxml2 libpython3.11 tzdata
)

# --bench only: nchan for the benchmark stack's pub/sub comparison (scripts/stack.sh
# loads it itself when RUNFEED_NGINX_BENCH=1), perf and valgrind for profiling.
# Installed with services held back (see install_without_services): nchan's
# package triggers a reload of a running system nginx.
BENCH_PACKAGES=(libnginx-mod-nchan linux-perf valgrind)

# ClickHouse (Debian 12: 18.16) for tag/batch membership. Its postinst would
# start the packaged server on 8123/9000 where services may be started, so it is
# installed with services held back (see install_without_services). Where the
# distribution has no such package, the stack runs without ClickHouse.
CH_PACKAGES=(clickhouse-server clickhouse-client)

# PgBouncer for the local stack's connection-pooler mode (RUNFEED_PGBOUNCER=1) and its integration test.
# Installed with services held back: its postinst would start a system pgbouncer on 6432.
PGB_PACKAGES=(pgbouncer)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done

ch_missing=()
for p in "${CH_PACKAGES[@]}"; do
    installed "$p" || ch_missing+=("$p")
done

pgb_missing=()
for p in "${PGB_PACKAGES[@]}"; do
    installed "$p" || pgb_missing+=("$p")
done

bench_missing=()
if ((bench)); then
    for p in "${BENCH_PACKAGES[@]}"; do
        installed "$p" || bench_missing+=("$p")
    done
fi

SUDO=()
if ((${#missing[@]} + ${#ch_missing[@]} + ${#pgb_missing[@]} + ${#bench_missing[@]})) && ! is_root; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]} ${ch_missing[*]} ${pgb_missing[*]} ${bench_missing[*]}"
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 --no-install-recommends)
apt_updated=0
apt_update() {
    ((apt_updated)) && return 0
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update
    apt_updated=1
}

# install_without_services PACKAGE... — apt-get install with invoke-rc.d told
# not to start anything (a temporary policy-rc.d answering 101, only when the
# machine has none of its own; container images usually ship one already).
install_without_services() {
    local policy=/usr/sbin/policy-rc.d rc=0
    if [[ ! -e $policy ]]; then
        trap '"${SUDO[@]}" rm -f '"$policy" EXIT
        printf '#!/bin/sh\n# temporary, written by runfeed scripts/deps.sh\nexit 101\n' \
            | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 0755 "$policy"
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$@" || rc=$?
    return $rc
}

if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    apt_update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing[@]}"
    for p in "${missing[@]}"; do
        installed "$p" || die "package $p did not install"
    done
else
    log "system packages: all present"
fi

if ((${#ch_missing[@]})); then
    apt_update
    if apt-cache show "${ch_missing[@]}" >/dev/null 2>&1; then
        log "installing missing ClickHouse packages: ${ch_missing[*]}"
        install_without_services "${ch_missing[@]}" || die "installing ${ch_missing[*]} failed"
        for p in "${ch_missing[@]}"; do
            installed "$p" || die "package $p did not install"
        done
    else
        warn "no ${ch_missing[*]} package here: the local stack runs without ClickHouse (PostgreSQL membership)"
    fi
fi
if ((${#pgb_missing[@]})); then
    log "installing missing packages (services held back): ${pgb_missing[*]}"
    apt_update
    install_without_services "${pgb_missing[@]}" || die "installing ${pgb_missing[*]} failed"
    for p in "${pgb_missing[@]}"; do
        installed "$p" || die "package $p did not install"
    done
fi
if ((${#bench_missing[@]})); then
    log "installing missing benchmark packages: ${bench_missing[*]}"
    apt_update
    install_without_services "${bench_missing[@]}" || die "installing ${bench_missing[*]} failed"
    for p in "${bench_missing[@]}"; do
        installed "$p" || die "package $p did not install"
    done
elif ((bench)); then
    log "benchmark packages: all present"
fi

# promtool (checks and unit-tests deploy/prometheus/*.yml and the dashboard's queries in
# tests/integration/test_metrics.py). Debian ships it only inside the `prometheus` package, whose
# installation would also set up a Prometheus server; so the package is downloaded and only promtool is
# extracted from it, into .runfeed/tools/ (nothing is installed system-wide). A promtool on PATH wins.
PROMTOOL_DIR="$RUNFEED_ROOT/.runfeed/tools"
if ! command -v promtool >/dev/null 2>&1 && [[ ! -x $PROMTOOL_DIR/promtool ]]; then
    apt_update
    log "fetching promtool (Debian package prometheus, extracted into $PROMTOOL_DIR)"
    tmp=$(mktemp -d)
    chown _apt "$tmp" 2>/dev/null || true   # apt-get download fetches as _apt where it can
    (cd "$tmp" && apt-get download -q prometheus >/dev/null) || die "apt-get download prometheus failed"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x" || die "could not unpack the prometheus package"
    mkdir -p "$PROMTOOL_DIR"
    install -m 0755 "$tmp/x/usr/bin/promtool" "$PROMTOOL_DIR/promtool"
    rm -rf "$tmp"
fi
if command -v promtool >/dev/null 2>&1; then
    log "promtool: $(command -v promtool)"
else
    log "promtool: $PROMTOOL_DIR/promtool"
fi

if command -v clickhouse-server >/dev/null 2>&1; then
    log "clickhouse: $(clickhouse-client --version 2>/dev/null | head -n1 || echo installed)"
fi

[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/psql ]] \
    || die "PostgreSQL 15 binaries not found in $PG_BIN"
getent passwd postgres >/dev/null || die "system user 'postgres' is missing (postgresql-common should create it)"

if ! command -v swift >/dev/null 2>&1; then
    die "swift not found: install the Swift toolchain under /opt/swift (bin in /opt/swift/usr/bin) or put it on PATH"
fi
log "swift: $(command -v swift)"
