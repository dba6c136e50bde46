/* kafka.sasl.password that changes (a file: secret re-read, a vault: secret rotated): each new
 * value goes to the consumer and the producer with rd_kafka_sasl_set_credentials (librdkafka
 * 2.0), used the next time they authenticate to a broker. Connections already authenticated
 * stay up (the broker does not drop them when the password changes); nothing is restarted. */
#include <librdkafka/rdkafka.h>

#include "core/log.h"
#include "kafka/internal.h"

const char *ksasl_password(const sk_kafka *k)
{
    if (!k->sasl_password)
        return "";
    if (sk_secret_pending(k->sasl_password))
        return "(skiff: password not read from Vault yet)";
    return sk_secret_value(k->sasl_password, NULL);
}

static void set_credentials(sk_kafka *k, rd_kafka_t *rk)
{
    rd_kafka_error_t *e =
        rd_kafka_sasl_set_credentials(rk, k->cfg->kafka_sasl_username, ksasl_password(k));
    if (e) {
        SK_LOG(SK_LOG_ERROR, "kafka", NULL, NULL,
               "librdkafka refused the new kafka.sasl.password (%s): the old one stays in use",
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
}

static void on_password(void *ud, const sk_secret *s)
{
    sk_kafka *k = ud;
    SK_LOG(SK_LOG_INFO, "kafka", NULL, NULL,
           "kafka.sasl.password changed (%s): used at the next broker authentication",
           sk_secret_origin(s));
    for (size_t i = 0; i < 2; i++)
        if (k->sasl_rk[i])
            set_credentials(k, k->sasl_rk[i]);
}

void ksasl_attach(sk_kafka *k, rd_kafka_t *rk)
{
    if (!k->sasl_password)
        return;
    size_t i = k->sasl_rk[0] ? 1 : 0;
    k->sasl_rk[i] = rk;
    if (i == 0 && sk_secret_subscribe(k->sasl_password, on_password, k) != 0)
        SK_LOG(SK_LOG_ERROR, "kafka", NULL, NULL, "cannot follow kafka.sasl.password changes");
}

void ksasl_detach(sk_kafka *k)
{
    if (k->sasl_password && k->sasl_rk[0])
        sk_secret_unsubscribe(k->sasl_password, on_password, k);
    k->sasl_rk[0] = k->sasl_rk[1] = NULL;
}
