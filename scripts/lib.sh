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

# ephemeral_range — "LOW HIGH": the ports the kernel hands to outgoing connections
# (/proc/sys/net/ipv4/ip_local_port_range; Linux's default 32768-60999 when unreadable).
ephemeral_range() {
    local lo='' hi=''
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    [[ $lo =~ ^[0-9]+$ && $hi =~ ^[0-9]+$ ]] || { lo=32768 hi=60999; }
    printf '%s %s\n' "$lo" "$hi"
}

# port_reserved PORT — PORT is in /proc/sys/net/ipv4/ip_local_reserved_ports, which the
# kernel never hands out as an ephemeral port.
port_reserved() {
    local list='' item items=()
    read -r list </proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || return 1
    IFS=, read -r -a items <<<"$list"
    for item in "${items[@]}"; do
        item=${item//[[:space:]]/}
        if [[ $item =~ ^([0-9]+)-([0-9]+)$ ]]; then
            (($1 >= BASH_REMATCH[1] && $1 <= BASH_REMATCH[2])) && return 0
        elif [[ $item =~ ^[0-9]+$ ]]; then
            (($1 == item)) && return 0
        fi
    done
    return 1
}

# port_ephemeral PORT — PORT may be handed to an outgoing connection at any time.
port_ephemeral() {
    local lo hi
    read -r lo hi < <(ephemeral_range)
    (($1 >= lo && $1 <= hi)) && ! port_reserved "$1"
}

# warn_ephemeral NAME FIRST [LAST] — warn when a port of FIRST..LAST (the value of NAME) lies in
# the kernel's ephemeral range: a service bound there can fail to start with "Address already
# in use" although nothing listens, because an outgoing connection was given that port.
warn_ephemeral() {
    local name=$1 first=$2 last=${3:-$2} lo hi p
    read -r lo hi < <(ephemeral_range)
    for ((p = first; p <= last; p++)); do
        port_ephemeral "$p" || continue
        if ((first == last)); then
            warn "$name=$first lies inside the kernel's ephemeral port range $lo-$hi" \
                 "(/proc/sys/net/ipv4/ip_local_port_range): any outgoing connection may be given that port," \
                 "and the service then cannot bind it although nothing listens there. Prefer a port below $lo."
        else
            warn "$name puts ports $p-$last (of $first-$last) inside the kernel's ephemeral port range $lo-$hi" \
                 "(/proc/sys/net/ipv4/ip_local_port_range): any outgoing connection may be given one of them," \
                 "and the service then cannot bind it. Prefer ports below $lo."
        fi
        return 0
    done
}

# _pid_desc PID — "pid N (command line)", shortened.
_pid_desc() {
    local pid=$1 cmd=''
    [[ -r /proc/$pid/cmdline ]] && cmd=$(tr -s '\0\n\t ' '    ' <"/proc/$pid/cmdline" 2>/dev/null)
    cmd=${cmd% }
    [[ -n $cmd ]] || cmd=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    ((${#cmd} > 100)) && cmd="${cmd:0:97}..."
    printf 'pid %s (%s)' "$pid" "${cmd:-?}"
}

# _hex_addr HEX — a /proc/net/tcp address ("0100007F:6358", or the IPv6 form) as text.
_hex_addr() {
    local ip=${1%:*} port=$((16#${1#*:}))
    if ((${#ip} == 8)); then
        printf '%d.%d.%d.%d:%d' "$((16#${ip:6:2}))" "$((16#${ip:4:2}))" "$((16#${ip:2:2}))" "$((16#${ip:0:2}))" "$port"
    else
        case "$ip" in
            00000000000000000000000000000000) printf '[::]:%d' "$port" ;;
            00000000000000000000000001000000) printf '[::1]:%d' "$port" ;;
            0000000000000000FFFF0000????????)
                local v4=${ip:24:8}
                printf '[::ffff:%d.%d.%d.%d]:%d' "$((16#${v4:6:2}))" "$((16#${v4:4:2}))" \
                    "$((16#${v4:2:2}))" "$((16#${v4:0:2}))" "$port" ;;
            *) printf '[%s]:%d' "$ip" "$port" ;;
        esac
    fi
}

# port_sockets PORT — the TCP sockets (IPv4 and IPv6, any state) whose local port is PORT, one
# per line: "STATE<TAB>LOCAL<TAB>PEER<TAB>PIDS" (PIDS space-separated; empty when no process
# holds it, as in TIME-WAIT, or when the owner is not visible). From `ss` (iproute2), or from
# /proc/net/tcp{,6} and a scan of /proc/*/fd without it.
port_sockets() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        ss -Htanp "sport = :$port" 2>/dev/null | awk -v OFS='\t' '
            { pids = ""; rest = ""
              for (i = 6; i <= NF; i++) rest = rest " " $i
              while (match(rest, /pid=[0-9]+/)) {
                  p = substr(rest, RSTART + 4, RLENGTH - 4)
                  if (index(" " pids " ", " " p " ") == 0) pids = pids (pids == "" ? "" : " ") p
                  rest = substr(rest, RSTART + RLENGTH)
              }
              print $1, $4, $5, pids }'
        return 0
    fi
    local hexport f state lhex rhex inode pids pid fd
    printf -v hexport '%04X' "$port"
    declare -A names=([01]=ESTAB [02]=SYN-SENT [03]=SYN-RECV [04]=FIN-WAIT-1 [05]=FIN-WAIT-2
        [06]=TIME-WAIT [07]=CLOSE [08]=CLOSE-WAIT [09]=LAST-ACK [0A]=LISTEN [0B]=CLOSING)
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] || continue
        while read -r _ lhex rhex state _ _ _ _ _ inode _; do
            [[ ${lhex##*:} == "$hexport" ]] || continue
            pids=''
            if [[ $inode != 0 ]]; then
                for fd in /proc/[0-9]*/fd/*; do
                    [[ $(readlink "$fd" 2>/dev/null) == "socket:[$inode]" ]] || continue
                    pid=${fd#/proc/}
                    pid=${pid%%/*}
                    [[ " $pids " == *" $pid "* ]] || pids+="${pids:+ }$pid"
                done
            fi
            printf '%s\t%s\t%s\t%s\n' "${names[$state]:-$state}" "$(_hex_addr "$lhex")" "$(_hex_addr "$rhex")" "$pids"
        done < <(tail -n +2 "$f")
    done
}

# port_report PORT — why PORT cannot be bound, in words (empty when no socket uses it): who
# listens there, or which connections hold it as their local port.
port_report() {
    local port=$1 state local_addr peer pids pid listeners='' conns='' tw=0 desc lo hi
    while IFS=$'\t' read -r state local_addr peer pids; do
        [[ -n $state ]] || continue
        desc=''
        for pid in $pids; do desc+="${desc:+, }$(_pid_desc "$pid")"; done
        if [[ $state == LISTEN ]]; then
            listeners+="${listeners:+; }${desc:-a process this shell cannot see (another PID namespace, or not root)} listens on $local_addr"
        elif [[ $state == TIME-WAIT ]]; then
            tw=$((tw + 1))
        else
            conns+="${conns:+; }$local_addr -> $peer ($state${desc:+, $desc})"
        fi
    done < <(port_sockets "$port")
    if [[ -n $listeners ]]; then
        printf 'port %s is in use: %s' "$port" "$listeners"
        return 0
    fi
    if [[ -z $conns ]] && ((tw == 0)) && port_busy "$port"; then
        printf 'port %s is in use: something accepts connections on 127.0.0.1:%s, but its process cannot be identified' \
            "$port" "$port"
        return 0
    fi
    [[ -n $conns ]] || ((tw)) || return 0
    read -r lo hi < <(ephemeral_range)
    printf 'nothing listens on port %s, but it is the local port of' "$port"
    [[ -n $conns ]] && printf ' open connection(s): %s' "$conns"
    [[ -n $conns ]] && ((tw)) && printf ' and of'
    ((tw)) && printf ' %s connection(s) in TIME-WAIT (closed, kept by the kernel for up to a minute)' "$tw"
    if port_ephemeral "$port"; then
        printf '. The port lies in the kernel'"'"'s ephemeral range %s-%s, so outgoing connections are given it' "$lo" "$hi"
    fi
}

# port_check NAME PORT — make sure a service can bind 127.0.0.1:PORT (the value of NAME): die
# naming what holds it (a listener, or connections using it as their local port). Sockets only
# in TIME-WAIT pass: every service here binds with SO_REUSEADDR, and a service that was just
# stopped leaves some behind.
port_check() {
    local name=$1 port=$2 report
    report=$(port_report "$port")
    if [[ $report == "port $port is in use"* ]]; then
        die "$report. Stop that process, or choose another port with $name."
    elif [[ $report == *"open connection"* ]]; then
        die "$report. Wait until they close, or choose another port with $name."
    fi
    return 0
}

# port_note PORT — " (<port_report>)" for a start-up failure message, or nothing.
port_note() {
    local report
    report=$(port_report "$1")
    [[ -n $report ]] && printf ' (%s)' "$report"
    return 0
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

# render_template TEMPLATE DEST [NAME=VALUE]... — write DEST from the file TEMPLATE (atomically: DEST.new, then
# renamed): every @NAME@ becomes VALUE, literally. The lines between a line holding only @IF_X@ and the next
# line holding only @ENDIF@ are kept when IF_X=1 is among the arguments and dropped when IF_X=0 is; the marker
# lines never are. An @IF_X@ without a value, a nested or unclosed block, or a placeholder (upper case,
# '@'-wrapped) left unreplaced is an error naming TEMPLATE. The local stack's nginx.conf
# (nginx/local.conf.template) and ClickHouse config (scripts/stack/templates/) are rendered this way.
render_template() {
    local src=$1 dest=$2 pair name line out='' keep=1 in_block=0
    shift 2
    local -A vals=()
    for pair in "$@"; do
        [[ $pair == *=* ]] || die "render_template: '$pair' is not NAME=VALUE"
        vals[${pair%%=*}]=${pair#*=}
    done
    [[ -r $src ]] || die "template $src not found"
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line =~ ^@(IF_[A-Z0-9_]+)@$ ]]; then
            ((in_block)) && die "$src: nested $line"
            name=${BASH_REMATCH[1]}
            [[ -n ${vals[$name]+set} ]] || die "$src: $line has no value (render_template ... $name=0|1)"
            in_block=1 keep=0
            [[ ${vals[$name]} == 1 ]] && keep=1
            continue
        fi
        if [[ $line == '@ENDIF@' ]]; then
            ((in_block)) || die "$src: @ENDIF@ without @IF_…@"
            in_block=0 keep=1
            continue
        fi
        ((keep)) && out+=$line$'\n'
    done <"$src"
    ((in_block)) && die "$src: @IF_…@ without @ENDIF@"
    # Literal replacement (no `&` expansion in bash >= 5.2).
    shopt -u patsub_replacement 2>/dev/null || true
    for name in "${!vals[@]}"; do
        [[ $name == IF_* ]] && continue
        out=${out//"@$name@"/"${vals[$name]}"}
    done
    [[ $out =~ @[A-Z_]+@ ]] && die "$src: placeholder ${BASH_REMATCH[0]} left unreplaced"
    printf '%s' "$out" >"$dest.new"
    mv -f "$dest.new" "$dest"
}
