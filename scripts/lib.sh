# shellcheck shell=bash
# Shared helpers for runfeed's scripts. Source it; don't execute it.

RUNFEED_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Swift lives in /opt/swift on the CI image; prefer it when present.
if [[ -d /opt/swift/usr/bin ]]; then
    case ":$PATH:" in
        *":/opt/swift/usr/bin:"*) ;;
        *) PATH="/opt/swift/usr/bin:$PATH" ;;
    esac
fi
# Debian keeps runuser/nginx in sbin, which a non-login root shell may lack.
case ":$PATH:" in *":/usr/sbin:"*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
export PATH

# Always the versioned PostgreSQL binaries: whatever else is on PATH (wrappers,
# other versions, /usr/local/bin shims) is not trusted.
PG_BIN=/usr/lib/postgresql/15/bin

if [[ -t 2 ]]; then
    _c_info=$'\e[1;34m' _c_warn=$'\e[1;33m' _c_err=$'\e[1;31m' _c_off=$'\e[0m'
else
    _c_info='' _c_warn='' _c_err='' _c_off=''
fi

log()  { printf '%s==>%s %s\n' "$_c_info" "$_c_off" "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$_c_warn" "$_c_off" "$*" >&2; }
die()  { printf '%serror:%s %s\n' "$_c_err" "$_c_off" "$*" >&2; exit 1; }

is_root() { [[ $(id -u) -eq 0 ]]; }

# abs_path PATH — absolute form of PATH (need not exist), relative to $PWD.
abs_path() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *)  printf '%s\n' "$PWD/$1" ;;
    esac
}

# short_hash STRING — 12 hex chars, stable per input.
short_hash() { printf '%s' "$1" | sha1sum | cut -c1-12; }

# pid_from FILE — the pid stored in FILE, or nothing.
pid_from() {
    local f=$1 pid=''
    [[ -s $f ]] && pid=$(head -n1 "$f" 2>/dev/null)
    pid=${pid//[!0-9]/}
    printf '%s' "$pid"
}

# pid_running PID — true if PID is a live process (not a zombie). Liveness is
# judged by the pid alone: a child that has been forked but not yet exec'd still
# has the forking shell's command line, so the command line says nothing here.
pid_running() {
    local pid=$1 stat state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r /proc/self/stat ]] || return 0  # no procfs: kill -0 is all we have
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $stat ]] || return 1
    state=${stat##*) }
    state=${state%% *}
    [[ $state != Z && $state != X ]]
}

# pid_file_running FILE — true if FILE names a live process (pid only).
pid_file_running() { pid_running "$(pid_from "$1")"; }

# pid_alive FILE [PATTERN] — true if FILE names a live process that is ours: its
# command line contains PATTERN (guards against a recycled pid from a stale file
# before the pid is signalled), or it is still the forked wrapper shell of a
# stack script that has not exec'd the service yet (its command line is the
# script's own). Use it to decide whether to signal a pid; use pid_running and
# the service's own readiness signal to check a start.
pid_alive() {
    local f=$1 pat=${2:-} pid cmd
    pid=$(pid_from "$f")
    pid_running "$pid" || return 1
    [[ -n $pat ]] || return 0
    [[ -r /proc/$pid/cmdline ]] || return 0  # no procfs: cannot tell, trust the pid file
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
    [[ $cmd == *"$pat"* ]] && return 0
    # fork-before-exec window: the child still runs the starting script
    [[ $cmd == *stack.sh* ]] && return 0
    return 1
}

# wait_for TIMEOUT_S DESCRIPTION CMD... — poll CMD every 0.2 s until it succeeds.
wait_for() {
    local timeout=$1 desc=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            warn "timed out after ${timeout}s waiting for $desc"
            return 1
        fi
        sleep 0.2
    done
}

# stop_pid PID GRACE_S — SIGTERM, then SIGKILL after GRACE_S seconds.
stop_pid() {
    local pid=$1 grace=${2:-5}
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            warn "pid $pid did not exit within ${grace}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
    done
}

# port_busy PORT — something accepts TCP connections on 127.0.0.1:PORT.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# require_port NAME VALUE
require_port() {
    [[ $2 =~ ^[0-9]+$ ]] && (($2 > 0 && $2 < 65536)) || die "$1 must be a TCP port number (got '$2')"
}

# show_log FILE [LINES] — print the tail of a log to stderr, for failures.
show_log() {
    local f=$1 n=${2:-40}
    if [[ -e $f ]]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
        tail -n "$n" "$f" >&2 || true
        printf -- '-----\n' >&2
    fi
}
