/* err.c: error names and the per-thread detail message. */
#include "common/err.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char ali_msg[1024];

static const char *const ali_names[AL_ERR_COUNT] = {
    [AL_OK] = "ok",
    [AL_EINVAL] = "invalid_argument",
    [AL_ENOMEM] = "out_of_memory",
    [AL_EIO] = "io_error",
    [AL_EFORMAT] = "bad_format",
    [AL_EUNSUPPORTED] = "unsupported",
    [AL_ENOTFOUND] = "not_found",
    [AL_ERANGE] = "out_of_range",
    [AL_ECAPACITY] = "capacity_exhausted",
    [AL_EOVERLOADED] = "overloaded",
    [AL_EUNAVAILABLE] = "unavailable",
    [AL_ETIMEDOUT] = "timed_out",
    [AL_ECLOSED] = "closed",
    [AL_EPROTO] = "protocol_error",
    [AL_ENODEV] = "no_device",
    [AL_EINTERNAL] = "internal",
};

const char *al_strerror(al_err e)
{
    if ((int)e < 0 || e >= AL_ERR_COUNT)
        return "unknown";
    return ali_names[e];
}

const char *al_errmsg(void) { return ali_msg; }

void ali_errclear(void) { ali_msg[0] = 0; }

al_err ali_verrf(al_err e, const char *fmt, va_list ap)
{
    vsnprintf(ali_msg, sizeof ali_msg, fmt, ap);
    return e;
}

al_err ali_errf(al_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ali_verrf(e, fmt, ap);
    va_end(ap);
    return e;
}

al_err ali_errctx(al_err e, const char *fmt, ...)
{
    char prev[sizeof ali_msg];
    char pre[512];
    va_list ap;
    memcpy(prev, ali_msg, sizeof prev);
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    const char *tail = prev[0] ? prev : al_strerror(e);
    size_t np = strlen(pre);
    if (np > sizeof ali_msg - 3)
        np = sizeof ali_msg - 3;
    memcpy(ali_msg, pre, np);
    memcpy(ali_msg + np, ": ", 2);
    size_t room = sizeof ali_msg - np - 3, nt = strlen(tail);
    if (nt > room)
        nt = room;
    memcpy(ali_msg + np + 2, tail, nt);
    ali_msg[np + 2 + nt] = 0;
    return e;
}
