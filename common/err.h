/* err.h: the one alora error enum, al_strerror, and a per-thread detail message. */
#ifndef AL_ERR_H
#define AL_ERR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_err {
    AL_OK = 0,
    AL_EINVAL,       /* invalid argument or request */
    AL_ENOMEM,       /* out of memory */
    AL_EIO,          /* file or socket I/O failed */
    AL_EFORMAT,      /* malformed file, message or config */
    AL_EUNSUPPORTED, /* valid but unsupported option or architecture */
    AL_ENOTFOUND,    /* missing file, tensor, key, session, ... */
    AL_ERANGE,       /* value out of range */
    AL_ECAPACITY,    /* a fixed pool (KV blocks, slots) is exhausted */
    AL_EOVERLOADED,  /* queue full: retry later */
    AL_EUNAVAILABLE, /* peer or service not available */
    AL_ETIMEDOUT,    /* deadline passed */
    AL_ECLOSED,      /* object or connection closed */
    AL_EPROTO,       /* wire protocol violation */
    AL_ENODEV,       /* no accelerator device */
    AL_EINTERNAL,    /* internal error (a bug that was caught) */
    AL_ERR_COUNT
} al_err;

/* Short stable name of an error ("invalid_argument", ...). */
const char *al_strerror(al_err e);

/* Detail message of the last error set on this thread (never NULL). */
const char *al_errmsg(void);

/* Sets the thread's detail message and returns e (for `return ali_errf(...)`). */
al_err ali_errf(al_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
al_err ali_verrf(al_err e, const char *fmt, va_list ap);
/* Prefixes the current detail message with more context, returns e. */
al_err ali_errctx(al_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ali_errclear(void);

#define AL_TRY(expr)                  \
    do {                              \
        al_err al_try_e_ = (expr);    \
        if (al_try_e_ != AL_OK)       \
            return al_try_e_;         \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
