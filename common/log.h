/* log.h: leveled logging to stderr with a process tag. */
#ifndef AL_LOG_H
#define AL_LOG_H

typedef enum { AL_LOG_DEBUG, AL_LOG_INFO, AL_LOG_WARN, AL_LOG_ERROR } al_log_level;

void al_log_set_level(al_log_level lvl);
void al_log_set_tag(const char *tag);
void al_log(al_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define AL_DEBUG(...) al_log(AL_LOG_DEBUG, __VA_ARGS__)
#define AL_INFO(...) al_log(AL_LOG_INFO, __VA_ARGS__)
#define AL_WARN(...) al_log(AL_LOG_WARN, __VA_ARGS__)
#define AL_ERROR(...) al_log(AL_LOG_ERROR, __VA_ARGS__)

#endif
