/* skiff-kafka-mock: hosts librdkafka's mock Kafka cluster for fault-injection tests.
 *
 *   skiff-kafka-mock [--brokers N] [--port-file FILE]
 *
 * The first stdout line is "bootstrap <host:port,...>". Then each stdin line is one command,
 * answered by exactly one line, "ok ..." or "error <message>":
 *
 *   topic <name> <partitions> <replication>   create a topic
 *   errors <api> <code> [<code>...]           the next requests of <api> fail, one per code
 *   clear <api>                               drop the errors still queued for <api>
 *   down <broker>  /  up <broker>             refuse / accept connections (no leader change)
 *   rtt <broker> <ms>                         delay every response of that broker
 *   leader <topic> <partition> <broker>       move a partition's leader (-1: none; a missing
 *                                             topic is auto-created, as clients do)
 *   bootstrap  /  help  /  quit
 *
 * <api> is a request name (Produce, Fetch, Metadata, ...) or its ApiKey number; <code> is a
 * Kafka error name (librdkafka's or the protocol's: NOT_LEADER_FOR_PARTITION or
 * NOT_LEADER_OR_FOLLOWER), its number, or _TRANSPORT (the broker closes the connection).
 * <broker> is an id from 1 to N, or "all". EOF on stdin, SIGTERM or SIGINT end it cleanly.
 * --port-file writes the bootstrap list to FILE (atomically) and removes it on exit. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_ARGS 64
#define MAX_LINE 4096
#define MAX_BROKERS 32

typedef struct mock {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mcluster;
    int brokers;
    bool quit;
} mock;

typedef struct command {
    const char *name;
    int min_args, max_args; /* not counting the command name */
    const char *usage;
    int (*run)(mock *m, char **argv, char *out, size_t outlen);
} command;

typedef struct name_code {
    const char *name;
    int code;
} name_code;

static volatile sig_atomic_t stop_signal;

/* The requests the mock broker of the librdkafka skiff links (2.12.1) serves
 * (rdkafka_mock_handlers.c). */
static const name_code api_names[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"ApiVersions", 18},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
    {"ConsumerGroupHeartbeat", 68},
    {"GetTelemetrySubscriptions", 71},
    {"PushTelemetry", 72},
};

/* Kafka protocol names (Errors.java) where librdkafka's names differ. */
static const name_code error_aliases[] = {
    {"UNKNOWN_SERVER_ERROR", -1},      {"CORRUPT_MESSAGE", 2},
    {"UNKNOWN_TOPIC_OR_PARTITION", 3}, {"INVALID_FETCH_SIZE", 4},
    {"NOT_LEADER_OR_FOLLOWER", 6},     {"MESSAGE_TOO_LARGE", 10},
    {"STALE_CONTROLLER_EPOCH", 11},    {"INVALID_TOPIC_EXCEPTION", 17},
};

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_api(const char *s, int16_t *api, char *out, size_t outlen)
{
    long v;
    for (size_t i = 0; i < sizeof api_names / sizeof api_names[0]; i++) {
        if (strcasecmp(s, api_names[i].name) == 0) {
            *api = (int16_t)api_names[i].code;
            return 0;
        }
    }
    if (parse_long(s, 0, INT16_MAX, &v) == 0) {
        *api = (int16_t)v;
        return 0;
    }
    snprintf(out, outlen,
             "unknown request type '%s' (an ApiKey number or a name such as Produce, "
             "Fetch, Metadata, OffsetCommit, JoinGroup; 'help' lists them)",
             s);
    return -1;
}

static const char *api_name(int16_t api)
{
    for (size_t i = 0; i < sizeof api_names / sizeof api_names[0]; i++) {
        if (api_names[i].code == api)
            return api_names[i].name;
    }
    return "ApiKey";
}

/* Error codes a broker can send (-1 and up) plus _TRANSPORT, which makes it disconnect. */
static bool error_allowed(int code)
{
    return code >= -1 || code == RD_KAFKA_RESP_ERR__TRANSPORT;
}

static int parse_error_code(const char *s, rd_kafka_resp_err_t *err, char *out, size_t outlen)
{
    const struct rd_kafka_err_desc *descs;
    size_t n;
    long v;
    const char *name = strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0 ? s + 18 : s;

    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name && strcasecmp(name, descs[i].name) == 0 && error_allowed(descs[i].code)) {
            *err = descs[i].code;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof error_aliases / sizeof error_aliases[0]; i++) {
        if (strcasecmp(name, error_aliases[i].name) == 0) {
            *err = (rd_kafka_resp_err_t)error_aliases[i].code;
            return 0;
        }
    }
    if (parse_long(s, INT16_MIN, INT16_MAX, &v) == 0 && error_allowed((int)v)) {
        for (size_t i = 0; i < n; i++) {
            if (descs[i].name && descs[i].code == v) {
                *err = descs[i].code;
                return 0;
            }
        }
    }
    snprintf(out, outlen,
             "unknown error code '%s' (a Kafka error name such as "
             "NOT_LEADER_FOR_PARTITION, its number, or _TRANSPORT)",
             s);
    return -1;
}

/* A broker id 1..brokers, or "all" (-1). */
static int parse_broker(const mock *m, const char *s, int32_t *id, char *out, size_t outlen)
{
    long v;
    if (strcasecmp(s, "all") == 0) {
        *id = -1;
        return 0;
    }
    if (parse_long(s, 1, m->brokers, &v) == 0) {
        *id = (int32_t)v;
        return 0;
    }
    snprintf(out, outlen, "bad broker id '%s' (1 to %d, or all)", s, m->brokers);
    return -1;
}

static int mock_result(rd_kafka_resp_err_t err, char *out, size_t outlen)
{
    if (!err)
        return 0;
    snprintf(out, outlen, "%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
    return -1;
}

static int cmd_topic(mock *m, char **argv, char *out, size_t outlen)
{
    long partitions, replication;
    if (parse_long(argv[2], 1, 100000, &partitions) < 0) {
        snprintf(out, outlen, "bad partition count '%s' (1 to 100000)", argv[2]);
        return -1;
    }
    if (parse_long(argv[3], 1, m->brokers, &replication) < 0) {
        snprintf(out, outlen, "bad replication factor '%s' (1 to %d, the broker count)", argv[3],
                 m->brokers);
        return -1;
    }
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(m->mcluster, argv[1], (int)partitions, (int)replication);
    if (mock_result(err, out, outlen) < 0)
        return -1;
    snprintf(out, outlen, "topic %s %ld %ld", argv[1], partitions, replication);
    return 0;
}

static int cmd_errors(mock *m, char **argv, char *out, size_t outlen)
{
    rd_kafka_resp_err_t errs[MAX_ARGS];
    size_t cnt = 0, used;
    int16_t api;
    if (parse_api(argv[1], &api, out, outlen) < 0)
        return -1;
    for (char **a = argv + 2; *a; a++) {
        if (parse_error_code(*a, &errs[cnt++], out, outlen) < 0)
            return -1;
    }
    rd_kafka_mock_push_request_errors_array(m->mcluster, api, cnt, errs);
    used = (size_t)snprintf(out, outlen, "errors %s(%d)", api_name(api), api);
    for (size_t i = 0; i < cnt && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, " %s", rd_kafka_err2name(errs[i]));
    return 0;
}

static int cmd_clear(mock *m, char **argv, char *out, size_t outlen)
{
    int16_t api;
    if (parse_api(argv[1], &api, out, outlen) < 0)
        return -1;
    rd_kafka_mock_clear_request_errors(m->mcluster, api);
    snprintf(out, outlen, "clear %s(%d)", api_name(api), api);
    return 0;
}

static int cmd_updown(mock *m, char **argv, char *out, size_t outlen)
{
    int32_t id;
    if (parse_broker(m, argv[1], &id, out, outlen) < 0)
        return -1;
    bool up = strcmp(argv[0], "up") == 0;
    rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(m->mcluster, id)
                                 : rd_kafka_mock_broker_set_down(m->mcluster, id);
    if (mock_result(err, out, outlen) < 0)
        return -1;
    snprintf(out, outlen, "%s %s", argv[0], argv[1]);
    return 0;
}

static int cmd_rtt(mock *m, char **argv, char *out, size_t outlen)
{
    int32_t id;
    long ms;
    if (parse_broker(m, argv[1], &id, out, outlen) < 0)
        return -1;
    if (parse_long(argv[2], 0, 3600000, &ms) < 0) {
        snprintf(out, outlen, "bad rtt '%s' (0 to 3600000 ms)", argv[2]);
        return -1;
    }
    if (mock_result(rd_kafka_mock_broker_set_rtt(m->mcluster, id, (int)ms), out, outlen) < 0)
        return -1;
    snprintf(out, outlen, "rtt %s %ld", argv[1], ms);
    return 0;
}

static int cmd_leader(mock *m, char **argv, char *out, size_t outlen)
{
    long partition, id;
    if (parse_long(argv[2], 0, INT32_MAX, &partition) < 0) {
        snprintf(out, outlen, "bad partition '%s'", argv[2]);
        return -1;
    }
    if (parse_long(argv[3], -1, m->brokers, &id) < 0 || id == 0) {
        snprintf(out, outlen, "bad broker id '%s' (1 to %d, or -1 for no leader)", argv[3],
                 m->brokers);
        return -1;
    }
    /* Like a client's Metadata request, this auto-creates a missing topic (4 partitions). */
    rd_kafka_resp_err_t err =
        rd_kafka_mock_partition_set_leader(m->mcluster, argv[1], (int32_t)partition, (int32_t)id);
    if (mock_result(err, out, outlen) < 0)
        return -1;
    snprintf(out, outlen, "leader %s %ld %ld", argv[1], partition, id);
    return 0;
}

static int cmd_bootstrap(mock *m, char **argv, char *out, size_t outlen)
{
    (void)argv;
    snprintf(out, outlen, "%s", rd_kafka_mock_cluster_bootstraps(m->mcluster));
    return 0;
}

static int cmd_quit(mock *m, char **argv, char *out, size_t outlen)
{
    (void)argv;
    m->quit = true;
    snprintf(out, outlen, "bye");
    return 0;
}

static int cmd_help(mock *m, char **argv, char *out, size_t outlen);

static const command commands[] = {
    {"topic", 3, 3, "topic <name> <partitions> <replication>", cmd_topic},
    {"errors", 2, MAX_ARGS - 3, "errors <api> <code> [<code>...]", cmd_errors},
    {"clear", 1, 1, "clear <api>", cmd_clear},
    {"down", 1, 1, "down <broker>", cmd_updown},
    {"up", 1, 1, "up <broker>", cmd_updown},
    {"rtt", 2, 2, "rtt <broker> <ms>", cmd_rtt},
    {"leader", 3, 3, "leader <topic> <partition> <broker>", cmd_leader},
    {"bootstrap", 0, 0, "bootstrap", cmd_bootstrap},
    {"help", 0, 0, "help", cmd_help},
    {"quit", 0, 0, "quit", cmd_quit},
};

static int cmd_help(mock *m, char **argv, char *out, size_t outlen)
{
    size_t used = (size_t)snprintf(out, outlen, "commands:");
    (void)m;
    (void)argv;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0] && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, " %s;", commands[i].usage);
    for (size_t i = 0; i < sizeof api_names / sizeof api_names[0] && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, "%s%s",
                                 i ? "," : " apis: ", api_names[i].name);
    return 0;
}

/* Runs one command line (modified in place); fills out with the answer's text. */
static int run_line(mock *m, char *line, char *out, size_t outlen)
{
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
        if (argc == MAX_ARGS) {
            snprintf(out, outlen, "too many arguments (at most %d)", MAX_ARGS - 1);
            return -1;
        }
        argv[argc++] = tok;
    }
    argv[argc] = NULL;
    if (argc == 0) {
        snprintf(out, outlen, "empty command ('help' lists the commands)");
        return -1;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const command *c = &commands[i];
        if (strcmp(argv[0], c->name) != 0)
            continue;
        if (argc - 1 < c->min_args || argc - 1 > c->max_args) {
            snprintf(out, outlen, "usage: %s", c->usage);
            return -1;
        }
        return c->run(m, argv, out, outlen);
    }
    snprintf(out, outlen, "unknown command '%.64s' ('help' lists the commands)", argv[0]);
    return -1;
}

static int answer(int rc, const char *text)
{
    printf("%s %s\n", rc == 0 ? "ok" : "error", text);
    return fflush(stdout) == 0 ? 0 : -1;
}

/* Answers each complete line at the start of buf (len bytes) and keeps the rest. A line that
 * overflowed the buffer (its head already dropped) is answered with an error. */
static int answer_lines(mock *m, char *buf, size_t *len, bool *overflow)
{
    char out[1024];
    char *nl;
    while (!m->quit && (nl = memchr(buf, '\n', *len))) {
        *nl = '\0';
        int rc = *overflow ? -1 : run_line(m, buf, out, sizeof out);
        if (*overflow)
            snprintf(out, sizeof out, "line too long (at most %d bytes)", MAX_LINE - 1);
        *overflow = false;
        if (answer(rc, out) < 0)
            return -1;
        *len -= (size_t)(nl + 1 - buf);
        memmove(buf, nl + 1, *len);
    }
    return 0;
}

/* Reads stdin and answers each line until quit, EOF, a signal or a stdout failure. Signals
 * are blocked except inside pselect, so one that arrives between two reads is not missed. */
static int serve(mock *m, const sigset_t *waitmask)
{
    static char buf[MAX_LINE];
    size_t len = 0;
    bool overflow = false;

    while (!m->quit && !stop_signal) {
        fd_set rfds;
        FD_ZERO(&rfds);
        FD_SET(STDIN_FILENO, &rfds);
        if (pselect(STDIN_FILENO + 1, &rfds, NULL, NULL, NULL, waitmask) < 0) {
            if (errno == EINTR)
                continue;
            perror("skiff-kafka-mock: select");
            return -1;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, sizeof buf - len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            perror("skiff-kafka-mock: read");
            return -1;
        }
        if (n == 0)
            return 0;
        len += (size_t)n;
        if (answer_lines(m, buf, &len, &overflow) < 0)
            return -1;
        if (len == sizeof buf) { /* no newline in a full buffer: drop it, answer at the end */
            overflow = true;
            len = 0;
        }
    }
    return 0;
}

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* Blocks SIGTERM and SIGINT (delivered only inside pselect, with waitmask) and ignores
 * SIGPIPE (a closed stdout shows as a write error). */
static int setup_signals(sigset_t *waitmask)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigset_t block;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    if (sigprocmask(SIG_BLOCK, &block, waitmask) < 0)
        return -1;
    sigdelset(waitmask, SIGTERM);
    sigdelset(waitmask, SIGINT);
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Writes "<bootstraps>\n" to path through a temporary file and rename. */
static int write_port_file(const char *path, const char *bootstraps)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int rc = fprintf(f, "%s\n", bootstraps) < 0 ? -1 : 0;
    if (fclose(f) != 0 || rc < 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* A producer handle that connects nowhere: it only owns the mock cluster, so no request of
 * its own ever consumes an injected error. */
static int mock_start(mock *m)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* log_level 4: no notice that this handle has no bootstrap.servers, on purpose. */
    if (rd_kafka_conf_set(conf, "client.id", "skiff-kafka-mock", errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof errstr)) {
        fprintf(stderr, "skiff-kafka-mock: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!m->rk) {
        fprintf(stderr, "skiff-kafka-mock: rd_kafka_new: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    m->mcluster = rd_kafka_mock_cluster_new(m->rk, m->brokers);
    if (!m->mcluster) {
        fprintf(stderr, "skiff-kafka-mock: could not create the mock cluster\n");
        return -1;
    }
    return 0;
}

static void mock_stop(mock *m)
{
    if (m->mcluster)
        rd_kafka_mock_cluster_destroy(m->mcluster);
    if (m->rk)
        rd_kafka_destroy(m->rk);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: skiff-kafka-mock [--brokers N (1-%d, default 3)] [--port-file FILE]\n"
            "then one command a line on stdin; 'help' lists them\n",
            MAX_BROKERS);
    return 2;
}

int main(int argc, char **argv)
{
    mock m = {.brokers = 3};
    const char *port_file = NULL;
    sigset_t waitmask;
    long v;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc &&
            parse_long(argv[i + 1], 1, MAX_BROKERS, &v) == 0) {
            m.brokers = (int)v;
            i++;
        } else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc && argv[i + 1][0]) {
            port_file = argv[++i];
        } else {
            return usage();
        }
    }
    if (setup_signals(&waitmask) < 0) {
        perror("skiff-kafka-mock: signals");
        return 1;
    }
    if (mock_start(&m) < 0)
        goto out;
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(m.mcluster);
    if (port_file && write_port_file(port_file, bootstraps) < 0) {
        fprintf(stderr, "skiff-kafka-mock: cannot write %s: %s\n", port_file, strerror(errno));
        port_file = NULL;
        goto out;
    }
    printf("bootstrap %s\n", bootstraps);
    if (fflush(stdout) == 0 && serve(&m, &waitmask) == 0)
        rc = 0;
out:
    if (port_file)
        unlink(port_file);
    mock_stop(&m);
    return rc;
}
