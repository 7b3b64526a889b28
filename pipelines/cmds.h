/* pipelines/cmds.h — the door of pipelines/: one entry point per `magpie` subcommand. Each takes
 * the arguments after the subcommand name (argv[0] is the subcommand) and returns an exit code
 * (MP_EXIT_*: 1 a usage error, 2 a failure, 3 a partial failure).
 * Contract: where arguments become library calls and results become exit codes. Options are
 * parsed through common/opt.h (exact names, --name VALUE or --name=VALUE, --help on every
 * command), and every usage error is the one line mp_usage_error writes, before any file is
 * touched. Errors of the libraries below reach the user as their one-line mp_err. The entry
 * points parse with getopt's globals and set process-wide state (--quiet, thread counts): one at
 * a time, from the main thread (magpie demo calls several in turn). argv is borrowed (getopt may
 * permute it); nothing returned needs freeing. No vendor header here, nor in run.h, manifest.h
 * and shard.h, the `magpie run` machinery its commands and tests use. */
#ifndef MP_CMDS_H
#define MP_CMDS_H

int cmd_synth(int argc, char **argv);
int cmd_tile(int argc, char **argv);
int cmd_db(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_view(int argc, char **argv); /* pipelines/cmd_view.c: the browser viewer */

/* `magpie db DB labels ...` and `magpie db DB split ...` (pipelines/cmd_db_curate.c);
 * argv[0] is "labels" or "split", db_path the dataset. */
int cmd_db_labels(const char *db_path, int argc, char **argv);
int cmd_db_split(const char *db_path, int argc, char **argv);
/* `magpie db merge OUT SHARD...` / `magpie db OUT merge SHARD...` (pipelines/cmd_db_merge.c):
 * argv[0] is OUT or "merge", the shards follow. */
int cmd_db_merge(const char *out, int argc, char **argv);

/* Curation queries and exports (pipelines/cmd_db_query.c, cmd_db_export.c, cmd_db_import.c,
 * cmd_db_balance.c): argv[0] is the subcommand name, db_path the dataset. */
int cmd_db_query(const char *db_path, int argc, char **argv);
int cmd_db_export(const char *db_path, int argc, char **argv);
int cmd_db_import(const char *db_path, int argc, char **argv);
int cmd_db_balance(const char *db_path, int argc, char **argv);
/* The curation tables of `db stats` (class x split x magnification, tissue histogram, MPP sources). */
struct mp_db;
int cmd_db_stats_curation(struct mp_db *db);
/* The arguments of a command taking a WHERE expression: opt(ctx, argc, argv, &i) consumes an option
 * at argv[i] (returns 1; -1 after printing a usage error; 0 if not an option); an unknown option is
 * a usage error; the other arguments are joined with spaces into *where (malloc'd). 0 or -1. */
int cmd_db_where_args(const char *who, int argc, char **argv, int (*opt)(void *, int, char **, int *), void *ctx,
                      char **where);
/* Curation (issue 12), each in pipelines/cmd_db_WHAT.c; argv[0] is the subcommand name
 * ("list"/"remove" for labels, "slides" for slides remove). */
int cmd_db_labels_list(const char *db_path, int argc, char **argv);
int cmd_db_labels_remove(const char *db_path, int argc, char **argv);
int cmd_db_slides_remove(const char *db_path, int argc, char **argv);
int cmd_db_vacuum(const char *db_path, int argc, char **argv);
int cmd_db_splits(const char *db_path, int argc, char **argv);

#endif
