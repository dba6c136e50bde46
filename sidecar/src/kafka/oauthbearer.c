/* SASL OAUTHBEARER with tokens from the token service. Debian's librdkafka (2.0.2) is built
 * without `oidc`, so its own token client is not available: skiff hands it the tokens with
 * rd_kafka_oauthbearer_set_token. librdkafka asks for a token through the refresh callback,
 * served by the polls on the loop (log.queue, the consumer's and producer's queues); a token
 * that is not there yet is handed over when it arrives, and so is every later one. */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "kafka/internal.h"

static void set_token(sk_kafka *k, rd_kafka_t *rk)
{
    const char *t = sk_oauth_token_get(k->token);
    if (!t)
        return; /* on_token hands it over */
    char why[512];
    if (rd_kafka_oauthbearer_set_token(rk, t, sk_oauth_token_expires_wall_ms(k->token),
                                       k->cfg->zeebe_client_id, NULL, 0, why,
                                       sizeof why) != RD_KAFKA_RESP_ERR_NO_ERROR)
        SK_LOG(SK_LOG_ERROR, "kafka", NULL, NULL, "librdkafka refused the OAUTHBEARER token: %s",
               why);
}

static void on_refresh(rd_kafka_t *rk, const char *config, void *opaque)
{
    (void)config;
    set_token(opaque, rk);
}

static void on_token(void *ud)
{
    sk_kafka *k = ud;
    for (size_t i = 0; i < 2; i++)
        if (k->oauth_rk[i])
            set_token(k, k->oauth_rk[i]);
}

int koauth_conf(const sk_kafka *k, rd_kafka_conf_t *c, char *err, size_t errlen)
{
    if (!k->token)
        return 0;
    /* OAUTHBEARER is a SASL mechanism: over TLS when kafka.security.protocol asks for TLS. */
    int p = k->cfg->kafka_security_protocol;
    const char *proto = p == SK_KAFKA_SSL || p == SK_KAFKA_SASL_SSL ? "sasl_ssl" : "sasl_plaintext";
    if (kconf_set(c, "security.protocol", proto, err, errlen) ||
        kconf_set(c, "sasl.mechanisms", "OAUTHBEARER", err, errlen))
        return -1;
    rd_kafka_conf_set_oauthbearer_token_refresh_cb(c, on_refresh);
    rd_kafka_conf_set_opaque(c, (void *)k); /* the refresh callback's; the consumer's too */
    return 0;
}

void koauth_attach(sk_kafka *k, rd_kafka_t *rk)
{
    if (!k->token)
        return;
    size_t i = k->oauth_rk[0] ? 1 : 0;
    k->oauth_rk[i] = rk;
    if (i == 0 && sk_oauth_listen(k->token, on_token, k) != 0)
        SK_LOG(SK_LOG_ERROR, "kafka", NULL, NULL, "cannot follow the OAUTHBEARER tokens");
    set_token(k, rk);
}

void koauth_detach(sk_kafka *k)
{
    if (k->token && k->oauth_rk[0])
        sk_oauth_unlisten(k->token, on_token, k);
    k->oauth_rk[0] = k->oauth_rk[1] = NULL;
}
