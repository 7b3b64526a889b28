/* common/log.h — messages and progress reporting for every subcommand.
 * Messages go to stderr. Progress is a redrawn bar on a TTY, JSON lines with
 * --progress=json (one object per update, on stderr), or nothing with --quiet.
 * Threads: mp_info/mp_warn/mp_error write each message with one stdio call (one whole line, from
 * any thread); mp_log_set_quiet is process-wide, set before threads start; a progress reporter's
 * updates may come from any thread, its new/finish/free from one. */
#ifndef MP_LOG_H
#define MP_LOG_H

#include <stdint.h>

typedef enum { MP_PROGRESS_AUTO, MP_PROGRESS_TTY, MP_PROGRESS_JSON, MP_PROGRESS_NONE } mp_progress_mode;

void mp_log_set_quiet(int quiet);
int mp_log_quiet(void);
void mp_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mp_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse "tty", "json", "none" or "auto". Returns -1 on an unknown mode. */
int mp_progress_parse(const char *s, mp_progress_mode *out);

typedef struct mp_progress mp_progress;
/* total may be 0 when unknown. unit is e.g. "patches" or "img". Thread-safe updates. */
mp_progress *mp_progress_new(mp_progress_mode mode, const char *task, uint64_t total, const char *unit);
/* Report `done` units complete; extra (may be NULL) is a short text shown after the bar
 * and, in JSON mode, a pre-formatted JSON fragment like "\"loss\":0.3" appended to the object. */
void mp_progress_update(mp_progress *p, uint64_t done, const char *extra);
void mp_progress_set_total(mp_progress *p, uint64_t total);
void mp_progress_finish(mp_progress *p, const char *extra);
void mp_progress_free(mp_progress *p);

double mp_now(void); /* monotonic seconds */

#endif
