/* log.c: leveled logging to stderr; level from ALORA_LOG (debug|info|warn|error). */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int ali_level = -1;
static char ali_tag[32] = "alora";

static int ali_level_get(void)
{
    if (ali_level < 0) {
        const char *e = getenv("ALORA_LOG");
        ali_level = AL_LOG_INFO;
        if (e && !strcmp(e, "debug"))
            ali_level = AL_LOG_DEBUG;
        else if (e && !strcmp(e, "warn"))
            ali_level = AL_LOG_WARN;
        else if (e && !strcmp(e, "error"))
            ali_level = AL_LOG_ERROR;
    }
    return ali_level;
}

void al_log_set_level(al_log_level lvl) { ali_level = (int)lvl; }

void al_log_set_tag(const char *tag) { snprintf(ali_tag, sizeof ali_tag, "%s", tag); }

void al_log(al_log_level lvl, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if ((int)lvl < ali_level_get())
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %s[%d] %s: ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, ali_tag, (int)getpid(), names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
