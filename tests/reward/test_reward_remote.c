/* tests/reward/test_reward_remote.c — the external graders against real
 * processes: the fault-injecting endpoint tests/reward/reward_server.py
 * (timeouts, connection refused, 5xx with retries, 4xx, bad JSON, missing
 * ids, wrong counts, non-numeric scores, headers), Bedrock's lambda grader
 * through BASALT_LAMBDA_<NAME>_URL, command graders (timeouts, exit codes,
 * stderr, rlimits), and one Lambda handler file,
 * examples/rewards/exact_answer.py, run unchanged both over HTTP and as a
 * command by examples/rewards/lambda_runner.py. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/test.h"
#include "reward/reward.h"

static const char *python(void) {
    const char *p = getenv("BASALT_PYTHON");
    return p && *p ? p : "python3";
}

typedef struct proc {
    pid_t pid;
    int port;
} proc;

/* Start argv and read the port from its first stdout line (after "PORT "
 * or "127.0.0.1:"); port 0 when it did not start. */
static proc spawn(char *const argv[]) {
    proc p = {0};
    int fd[2];
    if (pipe(fd) != 0) return p;
    p.pid = fork();
    if (p.pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    char line[256] = "";
    if (f && fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "PORT ");
        const char *h = strstr(line, "127.0.0.1:");
        p.port = s ? atoi(s + 5) : h ? atoi(h + 10) : 0;
    }
    if (f) fclose(f);
    return p;
}

static void stop(proc *p) {
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, NULL, 0);
    }
    p->pid = 0;
}

static proc server;

/* Three samples; the first two answer right.  The ids are not in order. */
static json_t *items[3];
static reward_sample samples[3];

static void setup_samples(void) {
    static const char *answers[] = {"4", "Paris", "blue"}, *outputs[] = {"4", "Paris", "green"}, *ids[] = {"s-b", "s-a", "7"};
    for (int i = 0; i < 3; i++) {
        items[i] = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "reference_answer", answers[i], "topic", "t", "messages", "role",
                             "user", "content", "q");
        samples[i] = (reward_sample){.id = ids[i], .output_text = outputs[i], .item = items[i]};
    }
}

/* Parse grader_json (with "%d" for the server port), score the samples. */
static void run(const char *grader_fmt, int port, double *scores, reward_errors *errs, json_t **metrics) {
    char buf[1024];
    snprintf(buf, sizeof buf, grader_fmt, port);
    json_t *gj = json_loads(buf, 0, NULL);
    bs_reward_grader *g = NULL;
    bs_error err = {0};
    memset(errs, 0, sizeof *errs);
    for (int i = 0; i < 3; i++) scores[i] = -1;
    if (!gj || reward_grader_parse(gj, &g, &err) != BS_OK) {
        fprintf(stderr, "  parse %s: %s\n", buf, err.msg);
        test_failed_ = 1;
    } else {
        CHECK_OK(reward_score_batch(g, samples, 3, scores, errs, metrics, &err), &err);
    }
    reward_grader_free(g);
    json_decref(gj);
}

static int posts(void) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d/count", server.port);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f && fscanf(f, "{\"posts\": %d}", &n) != 1) n = -1;
    if (f) pclose(f);
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define HTTP(path, opts) "{\"type\":\"http\",\"name\":\"h\",\"url\":\"http://127.0.0.1:%d" path "\"" opts "}"

static void test_http_ok(void) {
    if (!server.port) SKIP("reward_server.py did not start");
    double s[3];
    reward_errors e;
    json_t *m = NULL;
    int before = posts();
    run(HTTP("/ok", ""), server.port, s, &e, &m);
    CHECK_NEAR(s[0], 1, 0);
    CHECK_NEAR(s[1], 1, 0);
    CHECK_NEAR(s[2], 0, 0);
    CHECK_INT(posts() - before, 1); /* one batch */
    CHECK_NEAR(json_real_value(json_object_get(json_array_get(m, 2), "length")), 5, 0);
    CHECK_NEAR(json_real_value(json_object_get(json_array_get(m, 1), "exact")), 1, 0);
    for (int k = 0; k < REWARD_ERR_KINDS; k++) CHECK_INT(e.count[k], 0);
    json_decref(m);
    before = posts();
    run(HTTP("/ok", ",\"batch_size\":1,\"concurrency\":2"), server.port, s, &e, NULL);
    CHECK_NEAR(s[0] + s[1] + s[2], 2, 0);
    CHECK_INT(posts() - before, 3);
    run(HTTP("/echo_header", ",\"headers\":{\"X-Reward-Scale\":\"2.5\"}"), server.port, s, &e, NULL);
    CHECK_NEAR(s[2], 2.5, 0);
}

static void test_http_retries(void) {
    if (!server.port) SKIP("reward_server.py did not start");
    double s[3];
    reward_errors e;
    int before = posts();
    run(HTTP("/500", ",\"retries\":2"), server.port, s, &e, NULL);
    CHECK(isnan(s[0]) && isnan(s[1]) && isnan(s[2]));
    CHECK_INT(e.count[REWARD_ERR_HTTP_5XX], 3);
    CHECK_INT(posts() - before, 3); /* the first attempt and two retries */
    CHECK(strstr(e.first, "HTTP 500 after 3 attempt(s)") != NULL);
    run(HTTP("/flaky", ",\"retries\":1"), server.port, s, &e, NULL);
    CHECK_NEAR(s[0], 1, 0);
    CHECK_INT(e.count[REWARD_ERR_HTTP_5XX], 0);
    before = posts();
    run(HTTP("/400", ",\"retries\":3"), server.port, s, &e, NULL);
    CHECK_INT(e.count[REWARD_ERR_HTTP_4XX], 3);
    CHECK_INT(posts() - before, 1); /* a 4xx is final */
}

static void test_http_timeout_and_refused(void) {
    if (!server.port) SKIP("reward_server.py did not start");
    double s[3];
    reward_errors e;
    double t0 = now_s();
    run(HTTP("/slow", ",\"timeout_ms\":300,\"retries\":1"), server.port, s, &e, NULL);
    double took = now_s() - t0;
    CHECK(isnan(s[0]));
    CHECK_INT(e.count[REWARD_ERR_TIMEOUT], 3);
    CHECK(took < 2.0); /* 2 × 300 ms + 100 ms backoff, not the server's 3 s */
    /* a port nobody listens on: bind-free port 1 is refused on loopback */
    run("{\"type\":\"http\",\"name\":\"h\",\"url\":\"http://127.0.0.1:%d/\",\"retries\":1}", 1, s, &e, NULL);
    CHECK(isnan(s[1]));
    CHECK_INT(e.count[REWARD_ERR_CONNECTION], 3);
}

static void test_http_bad_answers(void) {
    if (!server.port) SKIP("reward_server.py did not start");
    double s[3];
    reward_errors e;
    run(HTTP("/badjson", ""), server.port, s, &e, NULL);
    CHECK(isnan(s[0]) && isnan(s[2]));
    CHECK_INT(e.count[REWARD_ERR_INVALID_JSON], 3);
    run(HTTP("/missing_id", ""), server.port, s, &e, NULL);
    CHECK(isnan(s[0]));
    CHECK_NEAR(s[1], 1, 0);
    CHECK_NEAR(s[2], 0, 0);
    CHECK_INT(e.count[REWARD_ERR_MISSING_ID], 1);
    CHECK(strstr(e.first, "no result with id \"s-b\"") != NULL);
    run(HTTP("/wrong_count", ""), server.port, s, &e, NULL);
    CHECK(isnan(s[0]) && isnan(s[1]) && isnan(s[2]));
    CHECK_INT(e.count[REWARD_ERR_WRONG_COUNT], 3);
    run(HTTP("/nan", ""), server.port, s, &e, NULL);
    CHECK(isnan(s[0]));
    CHECK_NEAR(s[1], 1, 0);
    CHECK_INT(e.count[REWARD_ERR_NAN], 1);
    CHECK_STR(reward_error_name(REWARD_ERR_WRONG_COUNT), "wrong_count");
}

static void test_lambda_mapping(void) {
    if (!server.port) SKIP("reward_server.py did not start");
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", server.port);
    setenv("BASALT_LAMBDA_MY_REWARD_FN_URL", url, 1);
    double s[3];
    reward_errors e;
    run("{\"type\":\"lambda\",\"lambda\":{\"function\":\"arn:aws:lambda:us-east-1:123456789012:function:my-reward-fn\"}}",
        0, s, &e, NULL);
    CHECK_NEAR(s[0], 1, 0);
    CHECK_NEAR(s[2], 0, 0);
    run("{\"type\":\"lambda\",\"lambda\":{\"function\":\"my-reward-fn\"}}", 0, s, &e, NULL);
    CHECK_NEAR(s[1], 1, 0);
    unsetenv("BASALT_LAMBDA_MY_REWARD_FN_URL");
}

static void test_command_failures(void) {
    double s[3];
    reward_errors e;
    double t0 = now_s();
    run("{\"type\":\"command\",\"name\":\"c\",\"argv\":[\"sleep\",\"5\"],\"timeout_ms\":300%.0d}", 0, s, &e, NULL);
    CHECK(isnan(s[0]));
    CHECK_INT(e.count[REWARD_ERR_TIMEOUT], 3);
    CHECK(now_s() - t0 < 2.0);
    run("{\"type\":\"command\",\"name\":\"c\",\"argv\":[\"sh\",\"-c\",\"cat >/dev/null; echo oops >&2; exit 3\"]%.0d}", 0, s, &e,
        NULL);
    CHECK_INT(e.count[REWARD_ERR_COMMAND], 3);
    CHECK(strstr(e.first, "exited with status 3; stderr: oops") != NULL);
    run("{\"type\":\"command\",\"name\":\"c\",\"argv\":[\"/nonexistent/reward\"]%.0d}", 0, s, &e, NULL);
    CHECK_INT(e.count[REWARD_ERR_COMMAND], 3);
    CHECK(strstr(e.first, "(cannot execute)") != NULL);
    run("{\"type\":\"command\",\"name\":\"c\",\"argv\":[\"sh\",\"-c\",\"echo '[1,2'\"]%.0d}", 0, s, &e, NULL);
    CHECK_INT(e.count[REWARD_ERR_INVALID_JSON], 3);
    /* a child that never reads its stdin and answers early must not kill us with SIGPIPE */
    run("{\"type\":\"command\",\"name\":\"c\",\"argv\":[\"sh\",\"-c\",\"echo '[]'\"],\"batch_size\":3%.0d}", 0, s, &e, NULL);
    CHECK_INT(e.count[REWARD_ERR_WRONG_COUNT], 3);
}

static void test_command_rlimits(void) {
    char g[1024];
    /* the score is the open-files limit, the metrics the CPU and address-space limits */
    snprintf(g, sizeof g,
             "{\"type\":\"command\",\"name\":\"c\",\"argv\":[\"%s\",\"-c\",\"import json,sys,resource as r; ev=json.load(sys.stdin); "
             "print(json.dumps([{'id':x['id'],'aggregate_reward_score':r.getrlimit(r.RLIMIT_NOFILE)[0],'metrics_list':"
             "[{'name':'cpu','value':r.getrlimit(r.RLIMIT_CPU)[0]},{'name':'as_mb','value':r.getrlimit(r.RLIMIT_AS)[0]>>20}]} "
             "for x in ev]))\"],\"max_files\":32,\"cpu_seconds\":7,\"memory_mb\":1024%%.0d}",
             python());
    double s[3];
    reward_errors e;
    json_t *m = NULL;
    run(g, 0, s, &e, &m);
    CHECK_NEAR(s[0], 32, 0);
    CHECK_NEAR(json_real_value(json_object_get(json_array_get(m, 1), "cpu")), 7, 0);
    CHECK_NEAR(json_real_value(json_object_get(json_array_get(m, 2), "as_mb")), 1024, 0);
    if (e.first[0]) fprintf(stderr, "  %s\n", e.first);
    json_decref(m);
}

/* The same handler file as an HTTP grader and as a command grader. */
static void test_lambda_handler_both_ways(void) {
    char *argv[] = {(char *)python(), "examples/rewards/lambda_runner.py", "examples/rewards/exact_answer.py", "--http", "0",
                    NULL};
    proc runner = spawn(argv);
    if (!runner.port) {
        stop(&runner);
        SKIP("lambda_runner.py did not start");
    }
    double h[3], c[3];
    reward_errors e;
    json_t *m = NULL;
    run(HTTP("/", ",\"batch_size\":2"), runner.port, h, &e, &m);
    CHECK_NEAR(h[0], 1, 0);
    CHECK_NEAR(h[1], 1, 0);
    CHECK_NEAR(h[2], 0, 0);
    CHECK_NEAR(json_real_value(json_object_get(json_array_get(m, 0), "exact_match")), 1, 0);
    json_decref(m);
    stop(&runner);
    char g[512];
    snprintf(g, sizeof g,
             "{\"type\":\"command\",\"name\":\"c\",\"argv\":[\"%s\",\"examples/rewards/lambda_runner.py\","
             "\"examples/rewards/exact_answer.py\"],\"timeout_ms\":20000%%.0d}",
             python());
    run(g, 0, c, &e, NULL);
    for (int i = 0; i < 3; i++) CHECK_NEAR(c[i], h[i], 0);
    for (int k = 0; k < REWARD_ERR_KINDS; k++) CHECK_INT(e.count[k], 0);
    if (e.first[0]) fprintf(stderr, "  %s\n", e.first);
}

int main(void) {
    setup_samples();
    char *argv[] = {(char *)python(), "tests/reward/reward_server.py", NULL};
    server = spawn(argv);
    RUN(test_http_ok);
    RUN(test_http_retries);
    RUN(test_http_timeout_and_refused);
    RUN(test_http_bad_answers);
    RUN(test_lambda_mapping);
    RUN(test_command_failures);
    RUN(test_command_rlimits);
    RUN(test_lambda_handler_both_ways);
    stop(&server);
    for (int i = 0; i < 3; i++) json_decref(items[i]);
    TEST_MAIN_END();
}
