# shellcheck shell=bash disable=SC2034  # variables shared with the other files of scripts/stack/
# The local stack's TLS material: a small local CA and the leaf every TLS listener of the stack serves
# (nginx, PostgreSQL, Redis with RUNFEED_REDIS_MODE=tls). Files in $TLS_DIR ($STATE/tls); not a process, so
# it has no start/stop/status: scripts/stack.sh calls tls_ensure before starting any service.
# Sourced by scripts/stack.sh.

# A small local CA ($TLS_DIR/ca.pem: CA:TRUE, keyCertSign; RUNFEED_CA_CERT) signs the
# leaf nginx serves ($TLS_DIR/cert.pem: CA:FALSE, serverAuth, SAN 127.0.0.1 and
# localhost). rustls and other WebPKI clients reject a CA certificate used as the
# server's own (CaUsedAsEndEntity), so the old single self-signed CA:TRUE
# certificate is replaced when found.
tls_valid() {
    [[ -s $TLS_DIR/ca.pem && -s $TLS_DIR/ca-key.pem && -s $TLS_DIR/cert.pem && -s $TLS_DIR/key.pem ]] \
        || return 1
    openssl x509 -noout -text -in "$TLS_DIR/ca.pem" 2>/dev/null | grep -q 'CA:TRUE' || return 1
    openssl x509 -noout -text -in "$TLS_DIR/cert.pem" 2>/dev/null | grep -q 'CA:FALSE' || return 1
    openssl verify -CAfile "$TLS_DIR/ca.pem" -purpose sslserver "$TLS_DIR/cert.pem" >/dev/null 2>&1 \
        || return 1
    openssl x509 -noout -checkend 86400 -in "$TLS_DIR/cert.pem" >/dev/null 2>&1
}

tls_ensure() {
    mkdir -p "$TLS_DIR"
    tls_valid && return 0
    if [[ -s $TLS_DIR/cert.pem ]]; then
        log "tls: replacing $TLS_DIR/cert.pem with a leaf signed by a local CA"
    else
        log "tls: local CA and a leaf certificate for localhost/127.0.0.1"
    fi
    local tmp
    tmp=$(mktemp -d "$TLS_DIR/.new.XXXXXX")
    cat >"$tmp/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
    openssl req -x509 -config "$tmp/openssl.cnf" -extensions ca_ext -newkey rsa:2048 -nodes \
        -days 3650 -sha256 -subj "/CN=runfeed local CA" \
        -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" >"$tmp/openssl.log" 2>&1 \
        && openssl req -new -config "$tmp/openssl.cnf" -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$tmp/key.pem" -out "$tmp/leaf.csr" >>"$tmp/openssl.log" 2>&1 \
        && openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" \
            -CAcreateserial -days 825 -sha256 -extfile "$tmp/openssl.cnf" -extensions leaf_ext \
            -out "$tmp/cert.pem" >>"$tmp/openssl.log" 2>&1 \
        || { show_log "$tmp/openssl.log"; rm -rf "$tmp"; die "openssl failed to create the local CA/certificate"; }
    chmod 0600 "$tmp/key.pem" "$tmp/ca-key.pem"
    mv -f "$tmp/ca.pem" "$tmp/ca-key.pem" "$tmp/key.pem" "$tmp/cert.pem" "$TLS_DIR/"
    rm -rf "$tmp"
    tls_valid || die "the new certificate $TLS_DIR/cert.pem does not verify against $TLS_DIR/ca.pem"
}
