/* Underwriting example: the `risk-score` job worker, written with the C SDK.
 *
 * Computes a deterministic risk score (0-100) from the application's variables
 * {"amount": 250000, "applicant": {"age": 41, "priorClaims": 0}} and completes the job with
 * {"riskScore": ..., "riskFactors": [...]}; missing input fails with retries 0 (an incident).
 * Build: handler-protocol/c/build.sh; run next to skiff: SKIFF_SOCKET=... risk-scorer */
#include "skiff_handler.h"

#include <stdio.h>

/* Pure, so a redelivered task gets the same answer. */
static int risk_score(double amount, int age, int prior_claims, json_t *factors)
{
    char why[64];
    int score = 20;
    int amount_points = amount / 25000 < 40 ? (int)(amount / 25000) : 40;
    if (amount_points > 0) {
        score += amount_points;
        snprintf(why, sizeof why, "amount +%d", amount_points);
        json_array_append_new(factors, json_string(why));
    }
    if (age < 25) {
        score += 20;
        json_array_append_new(factors, json_string("young applicant +20"));
    } else if (age > 70) {
        score += 15;
        json_array_append_new(factors, json_string("senior applicant +15"));
    }
    int claim_points = 10 * prior_claims < 30 ? 10 * prior_claims : 30;
    if (claim_points > 0) {
        score += claim_points;
        snprintf(why, sizeof why, "prior claims +%d", claim_points);
        json_array_append_new(factors, json_string(why));
    }
    return score < 0 ? 0 : score > 100 ? 100 : score;
}

static int score(skh_task *task, void *arg)
{
    (void)arg;
    json_t *amount = json_object_get(skh_task_variables(task), "amount");
    json_t *applicant = json_object_get(skh_task_variables(task), "applicant");
    json_t *age = json_object_get(applicant, "age");
    if (!json_is_number(amount) || !json_is_integer(age)) {
        /* Retrying cannot fix missing input: retries 0 raises an incident right away. */
        skh_failure f = {.message = "variables 'amount' and 'applicant.age' are required",
                         .retries = 0,
                         .retry_backoff_ms = -1};
        return skh_task_fail(task, &f);
    }
    int claims = (int)json_integer_value(json_object_get(applicant, "priorClaims"));
    json_t *factors = json_array();
    int value =
        risk_score(json_number_value(amount), (int)json_integer_value(age), claims, factors);
    json_t *vars = json_pack("{s:i,s:o}", "riskScore", value, "riskFactors", factors);
    int rc = skh_task_complete(task, vars);
    json_decref(vars);
    return rc;
}

int main(void)
{
    skh_options opts = {.name = "risk-scorer", .capacity = 4};
    skh_error err = {.code = "register", .message = "cannot register risk-score"};
    skh_handler *h = skh_handler_new(&opts, &err);
    if (h == NULL || skh_handler_job(h, "risk-score", score, NULL) < 0 ||
        skh_handler_run(h, &err) < 0) {
        fprintf(stderr, "risk-scorer: %s: %s\n", err.code, err.message);
        skh_handler_free(h);
        return 1;
    }
    skh_handler_free(h);
    return 0;
}
