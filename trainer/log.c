/* trainer/log.c — the training log (.log.jsonl): one JSON line per epoch, appended as the run goes
 * and cut back to the training state's epochs on --resume. curves.c draws the curve from it. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "trainer/run.h"

void tr_log_append(FILE *f, int epoch, int64_t step, double loss, const double *parts, double val, double ips,
                   double secs, const int64_t *drawn, int k)
{
    if (!f) return;
    /* without labelled validation patches val is NaN: JSON null (a bare nan made every line
     * unparsable, so a resume cut the whole log away) */
    char vs[32];
    if (isfinite(val)) snprintf(vs, sizeof vs, "%.6f", val);
    else snprintf(vs, sizeof vs, "null");
    fprintf(f, "{\"epoch\":%d,\"step\":%lld,\"loss\":%.6g,\"kd\":%.6g,\"feat\":%.6g,\"ce\":%.6g,\"mt\":%.6g,\"ccd\":%.6g,"
               "\"crp\":%.6g,\"val_balanced_accuracy\":%s,\"img_per_s\":%.1f,\"seconds\":%.2f",
            epoch, (long long)step, loss, parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], vs, ips, secs);
    if (drawn) { /* --sampling: the patches drawn per class this epoch */
        fprintf(f, ",\"drawn_per_class\":[");
        for (int c = 0; c < k; c++) fprintf(f, "%s%lld", c ? "," : "", (long long)drawn[c]);
        fprintf(f, "]");
    }
    fprintf(f, "}\n");
    fflush(f);
}

/* The log rewritten (atomically) to the epochs 1..done that the training state holds, in order,
 * each once: a kill between appending an epoch's line and saving the state would otherwise leave
 * that epoch twice after the resume (and a kill inside a write, half a line). */
int tr_log_trim(const char *logp, int done)
{
    if (!mp_file_exists(logp)) return 0;
    uint8_t *buf;
    size_t len;
    if (mp_read_file(logp, &buf, &len) < 0) return -1;
    char *out = mp_xmalloc(len + 1);
    size_t n = 0;
    int next = 1;
    for (size_t i = 0; i < len && next <= done;) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        if (j < len) { /* complete lines only */
            json_t *o = json_loadb((const char *)buf + i, j - i, 0, NULL);
            json_t *e = json_object_get(o, "epoch");
            if (json_is_integer(e) && json_integer_value(e) == next) {
                memcpy(out + n, buf + i, j - i + 1);
                n += j - i + 1;
                next++;
            }
            json_decref(o);
        }
        i = j + 1;
    }
    free(buf);
    int rc = mp_write_file_atomic(logp, out, n);
    free(out);
    return rc;
}
