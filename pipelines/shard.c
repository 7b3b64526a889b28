/* pipelines/shard.c — the slices of `magpie run --shard I/N` (see shard.h for the rule). */
#include "pipelines/shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/error.h"
#include "common/util.h"
#include "db/db.h"
#include "db/stats.h"

#define SHARD_MAX 100000

int shard_parse(const char *arg, run_shard *s)
{
    memset(s, 0, sizeof *s);
    const char *slash = strchr(arg, '/');
    char a[32];
    long i, n;
    if (!slash || slash - arg >= (long)sizeof a)
        return mp_err_set("--shard wants I/N (the I-th of N slices, 1 <= I <= N), got '%s'", arg);
    snprintf(a, sizeof a, "%.*s", (int)(slash - arg), arg);
    if (mp_parse_long(a, &i) || mp_parse_long(slash + 1, &n) || n < 1 || n > SHARD_MAX || i < 1 || i > n)
        return mp_err_set("--shard wants I/N (the I-th of N slices, 1 <= I <= N <= %d), got '%s'", SHARD_MAX, arg);
    s->i = (int)i;
    s->n = (int)n;
    snprintf(s->from, sizeof s->from, "--shard %d/%d", s->i, s->n);
    return 0;
}

static int env_long(const char *name, long dflt, long *out)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = dflt;
        return dflt < 0 ? mp_err_set("SLURM_ARRAY_TASK_ID is set but %s is not; pass --shard I/N", name) : 0;
    }
    if (mp_parse_long(v, out)) return mp_err_set("%s is '%s', not a number; pass --shard I/N", name, v);
    return 0;
}

int shard_from_env(run_shard *s)
{
    memset(s, 0, sizeof *s);
    const char *id = getenv("SLURM_ARRAY_TASK_ID");
    if (!id || !*id) return 0;
    long task, count, min, step;
    if (env_long("SLURM_ARRAY_TASK_ID", -1, &task) || env_long("SLURM_ARRAY_TASK_COUNT", -1, &count) ||
        env_long("SLURM_ARRAY_TASK_MIN", 0, &min) || env_long("SLURM_ARRAY_TASK_STEP", 1, &step))
        return -1;
    if (count < 1 || count > SHARD_MAX || step < 1 || task < min || (task - min) % step || (task - min) / step >= count)
        return mp_err_set("SLURM_ARRAY_TASK_ID=%ld does not map onto SLURM_ARRAY_TASK_COUNT=%ld slices (min %ld, step "
                          "%ld): use a contiguous array such as --array=0-%ld, or pass --shard I/N",
                          task, count, min, step, count - 1);
    s->i = (int)((task - min) / step) + 1;
    s->n = (int)count;
    snprintf(s->from, sizeof s->from, "SLURM_ARRAY_TASK_ID=%ld of SLURM_ARRAY_TASK_COUNT=%ld", task, count);
    return 0;
}

int shard_of(const char *name, int n)
{
    return n <= 1 ? 1 : (int)(XXH3_64bits(name, strlen(name)) % (unsigned long long)n) + 1;
}

void shard_view(const mf_list *all, const run_shard *s, mf_list *part)
{
    *part = *all;
    part->items = mp_xmalloc(sizeof(mf_item) * (size_t)(all->n ? all->n : 1));
    part->n = 0;
    for (int j = 0; j < all->n; j++)
        if (s->n < 1 || shard_of(all->items[j].name, s->n) == s->i) part->items[part->n++] = all->items[j];
}

void shard_view_free(mf_list *part)
{
    free(part->items);
    part->items = NULL;
    part->n = 0;
}

int shard_check_folder(const char *db_path, const run_shard *s)
{
    char want[32] = "";
    if (s->n > 1) snprintf(want, sizeof want, "%d/%d", s->i, s->n);
    if (!mp_file_exists(db_path) && !want[0]) return 0;
    mp_db *db = db_open(db_path, DB_OPEN_CREATE);
    if (!db) return -1;
    char *have = db_meta_get(db, "shard");
    int rc = 0;
    if (have ? strcmp(have, want) != 0 : want[0] && db_slides_count(db) > 0)
        rc = mp_err_set("%s: this folder holds %s%s of its manifest, and this run is %s%s (%s); give each shard "
                        "its own folder and keep N the same between submissions",
                        db_path, have ? "shard " : "", have ? have : "an unsharded run", want[0] ? "shard " : "",
                        want[0] ? want : "unsharded", s->n > 1 ? s->from : "no --shard");
    else if (!have && want[0])
        rc = db_meta_set(db, "shard", want);
    free(have);
    db_close(db);
    return rc;
}
