#!/usr/bin/env bash
# A local Redis Cluster on loopback: 3 masters and 3 replicas (Debian's redis-server 7), for the local stack
# (RUNFEED_REDIS_MODE=cluster) and the cluster tests.
#
#   scripts/redis-cluster.sh start  DIR FIRST_PORT [--tls CERT_DIR]   nodes on FIRST_PORT … FIRST_PORT+5,
#                                                                     their cluster bus on FIRST_PORT+6 … +11
#   scripts/redis-cluster.sh stop   DIR                               stops the nodes started in DIR (by pid)
#   scripts/redis-cluster.sh status DIR
#
# With --tls the nodes listen on TLS only (cluster bus and replication too), with CERT_DIR/{cert,key,ca}.pem
# (the stack's local CA). The cluster is created once (redis-cli --cluster create); a restart reuses the
# nodes' own cluster configuration in DIR. Failover is quick (cluster-node-timeout 2000 ms, and a replica
# always stands for election: cluster-replica-validity-factor 0) so tests can exercise it.
set -euo pipefail

die() { echo "redis-cluster: $*" >&2; exit 1; }

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || die "usage: $0 start|stop|status DIR [FIRST_PORT [--tls CERT_DIR]]"

pid_of() { [[ -s $1 ]] && cat "$1" || true; }
alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

cli() {
    local port=$1; shift
    if [[ -n ${TLS_DIR:-} ]]; then
        redis-cli -h 127.0.0.1 -p "$port" --tls --cacert "$TLS_DIR/ca.pem" "$@"
    else
        redis-cli -h 127.0.0.1 -p "$port" "$@"
    fi
}

case $cmd in
start)
    first=${3:-}
    [[ $first =~ ^[0-9]+$ ]] || die "start needs FIRST_PORT"
    TLS_DIR=
    if [[ ${4:-} == --tls ]]; then
        TLS_DIR=${5:-}
        [[ -f $TLS_DIR/cert.pem && -f $TLS_DIR/key.pem && -f $TLS_DIR/ca.pem ]] || die "--tls needs CERT_DIR with cert.pem, key.pem, ca.pem"
    fi
    mkdir -p "$dir"
    echo "${TLS_DIR}" >"$dir/tls-dir"
    ports=()
    for i in 0 1 2 3 4 5; do
        port=$((first + i))
        ports+=("$port")
        nd="$dir/$port"
        mkdir -p "$nd"
        pid=$(pid_of "$nd/redis.pid")
        if alive "$pid"; then continue; fi
        if [[ -n $TLS_DIR ]]; then
            listen=(--port 0 --tls-port "$port" --tls-cluster yes --tls-replication yes
                    --tls-cert-file "$TLS_DIR/cert.pem" --tls-key-file "$TLS_DIR/key.pem"
                    --tls-ca-cert-file "$TLS_DIR/ca.pem" --tls-auth-clients no)
        else
            listen=(--port "$port")
        fi
        redis-server "${listen[@]}" --bind 127.0.0.1 --cluster-enabled yes --cluster-port $((port + 6)) \
            --cluster-config-file "$nd/nodes.conf" --cluster-node-timeout 2000 --cluster-replica-validity-factor 0 \
            --daemonize yes --pidfile "$nd/redis.pid" --dir "$nd" --logfile "$nd/redis.log" \
            --save "" --appendonly no >/dev/null
    done
    for port in "${ports[@]}"; do
        for _ in $(seq 1 100); do
            [[ $(cli "$port" PING 2>/dev/null) == PONG ]] && break
            sleep 0.1
        done
        [[ $(cli "$port" PING 2>/dev/null) == PONG ]] || die "node $port did not start (log: $dir/$port/redis.log)"
    done
    if [[ $(cli "${ports[0]}" CLUSTER INFO 2>/dev/null | tr -d '\r' | grep '^cluster_slots_assigned:' | cut -d: -f2) != 16384 ]]; then
        addrs=()
        for port in "${ports[@]}"; do addrs+=("127.0.0.1:$port"); done
        if [[ -n $TLS_DIR ]]; then
            redis-cli --tls --cacert "$TLS_DIR/ca.pem" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
                || die "cluster create failed: $(tail -5 "$dir/create.log")"
        else
            redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
                || die "cluster create failed: $(tail -5 "$dir/create.log")"
        fi
    fi
    for _ in $(seq 1 200); do
        ok=1
        for port in "${ports[@]}"; do
            [[ $(cli "$port" CLUSTER INFO 2>/dev/null | tr -d '\r' | grep '^cluster_state:' | cut -d: -f2) == ok ]] || ok=0
        done
        ((ok)) && break
        sleep 0.1
    done
    ((ok)) || die "the cluster did not reach cluster_state:ok"
    # Every replica in sync with its master (a failover right after start needs a replica that has the data).
    for _ in $(seq 1 200); do
        ok=1
        for port in "${ports[@]}"; do
            info=$(cli "$port" INFO replication 2>/dev/null | tr -d '\r')
            if grep -q '^role:slave' <<<"$info" && ! grep -q '^master_link_status:up' <<<"$info"; then ok=0; fi
        done
        ((ok)) && break
        sleep 0.1
    done
    ((ok)) || die "the replicas did not finish their first sync"
    echo "redis cluster up: 127.0.0.1:${ports[0]}-${ports[5]}${TLS_DIR:+ (TLS)}"
    ;;
stop)
    for nd in "$dir"/*/; do
        [[ -f $nd/redis.pid ]] || continue
        pid=$(pid_of "$nd/redis.pid")
        if alive "$pid"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$nd/redis.pid"
    done
    ;;
status)
    TLS_DIR=$(cat "$dir/tls-dir" 2>/dev/null || true)
    for nd in "$dir"/*/; do
        [[ -f $nd/redis.pid || -f $nd/nodes.conf ]] || continue
        port=$(basename "$nd")
        pid=$(pid_of "$nd/redis.pid")
        if alive "$pid"; then
            role=$(cli "$port" ROLE 2>/dev/null | head -1)
            echo "redis     running   127.0.0.1:$port  pid=$pid  $role"
        else
            echo "redis     stopped   127.0.0.1:$port"
        fi
    done
    ;;
*)
    die "unknown command $cmd"
    ;;
esac
