// Test cases of .semgrep/c.yml (semgrep scan --test .semgrep).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cases(char *dst, size_t n, const char *src, char *user)
{
    // ruleid: skiff-unbounded-string-write
    strcpy(dst, src);
    // ruleid: skiff-unbounded-string-write
    sprintf(dst, "%s", src);
    // ok: skiff-unbounded-string-write
    snprintf(dst, n, "%s", src);
    // ruleid: skiff-shell-command
    system(user);
    // ruleid: skiff-insecure-temp-file
    tmpnam(dst);
    // ruleid: skiff-format-string-not-literal
    printf(user);
    // ruleid: skiff-format-string-not-literal
    snprintf(dst, n, user, 1);
    // ruleid: skiff-unchecked-string-append
    strcat(dst, src);
    // ruleid: skiff-atoi
    n = (size_t)atoi(src);
}

void forwards(char *buf, size_t n, const char *fmt, long long v)
{
    // ok: skiff-format-string-not-literal
    snprintf(buf, n, fmt, v);
}

void tls(void *h, void *ctx)
{
    // ruleid: skiff-tls-verification-off
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    // ok: skiff-tls-verification-off
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    // ruleid: skiff-tls-verification-off
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
}
