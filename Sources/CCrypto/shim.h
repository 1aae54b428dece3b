#ifndef RUNFEED_CCRYPTO_SHIM_H
#define RUNFEED_CCRYPTO_SHIM_H
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

/* HMAC-SHA256 in one call; returns 1 on success. out must hold 32 bytes. */
static inline int runfeed_hmac_sha256(const void *key, int keyLen, const unsigned char *data, size_t dataLen, unsigned char *out) {
    unsigned int outLen = 0;
    return HMAC(EVP_sha256(), key, keyLen, data, dataLen, out, &outLen) != NULL && outLen == 32;
}
/* SHA-256 in one call; returns 1 on success. out must hold 32 bytes. */
static inline int runfeed_sha256(const unsigned char *data, size_t dataLen, unsigned char *out) {
    unsigned int outLen = 0;
    return EVP_Digest(data, dataLen, out, &outLen, EVP_sha256(), NULL) == 1 && outLen == 32;
}
/* Constant-time comparison; returns 0 when equal. */
static inline int runfeed_memcmp_ct(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len); }
#endif
