/* bench/gateway_load.c — a small closed-loop HTTP/1.1 load generator for
 * bench/gateway.sh: C clients, one keep-alive connection each, POST the
 * same JSON body for a fixed time; prints one JSON line with p50/p99
 * latency (µs), throughput and errors.
 *
 *   gateway_load PORT PATH BODY CLIENTS SECONDS [HEADER]...
 *
 * HEADER: "Name: value", sent on every request (Portkey's routing headers).
 *
 * Plain sockets and pthreads (no libcurl) so the client adds as little of
 * its own time as it can; responses must carry Content-Length (basalt and
 * the mock both send it for non-streamed bodies). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct client {
    int port;
    const char *req;
    size_t req_len;
    double until;
    double *lat; /* seconds */
    size_t n, cap;
    long errors;
} client;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One response: headers, then Content-Length bytes.  1 on a 200, 0 on
 * another status, -1 when the connection broke. */
static int read_response(int fd, char *buf, size_t cap) {
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        ssize_t k = read(fd, buf + have, cap - 1 - have);
        if (k <= 0) return -1;
        have += (size_t)k;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (!end && have >= cap - 1) return -1;
    }
    int ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
    long len = -1;
    for (char *p = buf; p < end; p = strstr(p, "\r\n") + 2)
        if (strncasecmp(p, "content-length:", 15) == 0) len = strtol(p + 15, NULL, 10);
    if (len < 0) return -1;
    size_t body = have - (size_t)(end + 4 - buf);
    while (body < (size_t)len) {
        ssize_t k = read(fd, buf, cap);
        if (k <= 0) return -1;
        body += (size_t)k;
    }
    return ok;
}

static void *run(void *arg) {
    client *c = arg;
    char *buf = malloc(1 << 16);
    int fd = connect_to(c->port);
    while (buf && fd >= 0 && now() < c->until) {
        double t0 = now();
        int rc = write(fd, c->req, c->req_len) == (ssize_t)c->req_len ? read_response(fd, buf, 1 << 16) : -1;
        if (rc < 0) {
            close(fd);
            fd = connect_to(c->port);
            c->errors++;
            continue;
        }
        if (!rc) c->errors++;
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 4096;
            c->lat = realloc(c->lat, c->cap * sizeof *c->lat);
            if (!c->lat) break;
        }
        c->lat[c->n++] = now() - t0;
    }
    if (fd >= 0) close(fd);
    free(buf);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: gateway_load PORT PATH BODY CLIENTS SECONDS [HEADER]...\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[4]);
    double secs = atof(argv[5]);
    size_t extra_len = 0;
    for (int i = 6; i < argc; i++) extra_len += strlen(argv[i]) + 2;
    char *extra = calloc(1, extra_len + 1);
    for (int i = 6; extra && i < argc; i++) strcat(strcat(extra, argv[i]), "\r\n");
    char *req;
    int len = extra ? asprintf(&req,
                               "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                               "%sContent-Length: %zu\r\n\r\n%s",
                               argv[2], extra, strlen(argv[3]), argv[3])
                    : -1;
    free(extra);
    if (len < 0 || n < 1) return 2;
    client *cs = calloc((size_t)n, sizeof *cs);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        cs[i] = (client){.port = port, .req = req, .req_len = (size_t)len, .until = t0 + secs};
        pthread_create(&th[i], NULL, run, &cs[i]);
    }
    size_t total = 0;
    long errors = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        total += cs[i].n;
        errors += cs[i].errors;
    }
    double elapsed = now() - t0;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(all + k, cs[i].lat, cs[i].n * sizeof *all);
        k += cs[i].n;
        free(cs[i].lat);
    }
    qsort(all, total, sizeof *all, cmp);
    double p50 = total ? all[total / 2] : 0, p99 = total ? all[(size_t)((double)total * 0.99)] : 0;
    printf("{\"clients\":%d,\"requests\":%zu,\"errors\":%ld,\"rps\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", n, total,
           errors, (double)total / elapsed, p50 * 1e6, p99 * 1e6);
    free(all);
    free(cs);
    free(th);
    free(req);
    return 0;
}
