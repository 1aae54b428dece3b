#ifndef RUNFEED_CTLS_SHIM_H
#define RUNFEED_CTLS_SHIM_H
/* OpenSSL's libssl for TLS to Redis. Macros and variadic calls get static inline shims. */
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>

/* SNI: SSL_set_tlsext_host_name is a macro. */
static inline int runfeed_ssl_set_sni(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }

/* Partial writes and a moving write buffer: the event loop retries a write with the unsent rest. */
static inline void runfeed_ssl_ctx_set_modes(SSL_CTX *ctx) {
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}

/* The oldest queued OpenSSL error as text (empty when none); clears the queue. */
static inline void runfeed_ssl_error_text(char *buf, size_t len) {
    unsigned long e = ERR_get_error();
    if (e == 0) { if (len) buf[0] = 0; } else { ERR_error_string_n(e, buf, len); }
    ERR_clear_error();
}

/* Verify the peer's certificate against an IP address (for hosts given as literal addresses). */
static inline int runfeed_ssl_set_verify_ip(SSL *ssl, const char *ip) {
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip);
}
#endif
