#ifndef RUNFEED_CCURL_SHIM_H
#define RUNFEED_CCURL_SHIM_H
#include <curl/curl.h>
/* curl_easy_setopt and curl_easy_getinfo are variadic: Swift cannot call them directly. */
static inline CURLcode runfeed_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode runfeed_curl_setopt_ptr(CURL *h, CURLoption o, const void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode runfeed_curl_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
typedef size_t (*runfeed_curl_write_cb)(char *, size_t, size_t, void *);
static inline CURLcode runfeed_curl_setopt_writefn(CURL *h, runfeed_curl_write_cb f) { return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f); }
static inline CURLcode runfeed_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
#endif
