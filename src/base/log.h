/* base/log.h — leveled logging to stderr with a monotonic timestamp.
 * The level comes from BASALT_LOG (error|warn|info|debug), default info. */
#ifndef BASALT_BASE_LOG_H
#define BASALT_BASE_LOG_H

typedef enum { BS_LOG_ERROR, BS_LOG_WARN, BS_LOG_INFO, BS_LOG_DEBUG } bs_log_level;

void bs_log(bs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define bs_log_error(...) bs_log(BS_LOG_ERROR, __VA_ARGS__)
#define bs_log_warn(...)  bs_log(BS_LOG_WARN, __VA_ARGS__)
#define bs_log_info(...)  bs_log(BS_LOG_INFO, __VA_ARGS__)
#define bs_log_debug(...) bs_log(BS_LOG_DEBUG, __VA_ARGS__)

/* Seconds from an arbitrary fixed point; for durations only. */
double bs_now(void);

#endif
