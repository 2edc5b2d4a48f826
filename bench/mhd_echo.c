/* bench/mhd_echo.c — the floor of basalt's HTTP server for bench/gateway.sh:
 * libmicrohttpd with basalt's own daemon flags (thread per connection,
 * src/server/http.c), reading the POST body and answering a fixed
 * chat-completion-sized JSON body, with no handler work at all.  "basalt
 * minus mhd_echo" is what the gateway's own work and its upstream hop cost;
 * "mhd_echo minus direct" is what one more MHD server hop costs.
 *
 *   mhd_echo [thread|epoll N]
 *
 * thread: MHD_USE_THREAD_PER_CONNECTION (basalt's mode; the default);
 * epoll N: MHD_USE_EPOLL_INTERNAL_THREAD with a pool of N threads, the mode
 *          basalt cannot use while its handlers block (for comparison).
 * Prints "listening on PORT" and serves until killed.  Not installed. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char reply_body[] =
    "{\"id\":\"chatcmpl-echo\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"mock-model\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hello from echo\"},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":4,\"total_tokens\":5}}";

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    static int started;
    if (!*con_cls) {
        *con_cls = &started; /* headers in: read the body next */
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof reply_body - 1, (void *)reply_body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result rc = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return rc;
}

int main(int argc, char **argv) {
    int epoll = argc > 1 && strcmp(argv[1], "epoll") == 0;
    unsigned pool = epoll && argc > 2 ? (unsigned)atoi(argv[2]) : 1;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                     (epoll ? MHD_USE_EPOLL_INTERNAL_THREAD : MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL);
    struct MHD_Daemon *d =
        epoll ? MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_THREAD_POOL_SIZE, pool,
                                 MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END)
              : MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_CONNECTION_LIMIT, 4096u,
                                 MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mhd_echo: cannot start the daemon\n");
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on %u\n", di ? di->port : 0u);
    fflush(stdout);
    for (;;) pause();
}
