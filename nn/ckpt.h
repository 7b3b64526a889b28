/* nn/ckpt.h — magpie checkpoints (.mpk): architecture and metadata as key/values, a tensor
 * table with per-tensor CRC32, 64-byte aligned data, and optional training state (step, epoch,
 * optimiser moments, RNG states, any extra tensor such as CRCKD memory banks).
 *
 * File layout (integers little-endian, version 1):
 *   0   8  magic "MAGPIECK"
 *   8   4  version (1)
 *   12  4  flags: bit 0 = training state present; other bits zero
 *   16  8  header_len: bytes of the JSON header that starts at 64
 *   24  8  ntensors
 *   32  8  table_off = align8(64 + header_len)
 *   40  8  data_off  = align64(table_off + 160 * ntensors)
 *   48  8  file_len: total bytes (so truncation is told from corruption)
 *   56  4  CRC32 of bytes 0..55, the header and the table
 *   60  4  zero
 *   64     header: UTF-8 JSON {"meta": {key: "value"...}, "train": {key: "value"...}}
 *          ("train" only with flag bit 0); zero padding to table_off
 *   table  ntensors records of 160 bytes:
 *            0 96 name, NUL-terminated, NUL-padded    96 4 dtype (nn_dtype)
 *          100  4 ndim (0..4)                        104 32 shape[4] (int64, unused = 0)
 *          136  8 offset from data_off (multiple of 64)  144 8 nbytes
 *          152  4 CRC32 of the data                  156 1 section (0 model, 1 training state)
 *          157  3 zero
 *   data   each tensor at data_off + offset, zero padding between, nothing after the last.
 * Every byte is covered by a CRC or must be zero, so any single corrupted byte is detected.
 * Writing goes to PATH.tmp.<pid>, fsync, rename, fsync of the directory.
 * An nn_ckpt owns its tensors and strings (nn_ckpt_free); lookups return borrowed pointers into
 * it. -1 + mp_err "PATH: reason" on failure. One thread per nn_ckpt; no state beside it. */
#ifndef NN_CKPT_H
#define NN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"
#include "nn/dtype.h"
#include "nn/params.h"

#define NN_CKPT_VERSION 1
/* What a file may declare (the loader refuses more, in one line). */
#define NN_CKPT_MAX_TENSORS 65536
#define NN_CKPT_MAX_KEYS 65536      /* per section (meta, train) */
#define NN_CKPT_MAX_KEY_LEN 256
#define NN_CKPT_MAX_VALUE_LEN (1 << 20)
#define NN_CKPT_MAX_HEADER (64 << 20)

enum { NN_CKPT_MODEL = 0, NN_CKPT_TRAIN = 1 };

typedef struct {
    char name[NN_NAME_MAX];
    nn_dtype dtype;
    int ndim;
    int64_t shape[NN_MAX_DIM];
    size_t numel, nbytes;
    int section;  /* NN_CKPT_MODEL or NN_CKPT_TRAIN */
    void *data;
    int owned;    /* data is freed with the checkpoint */
} nn_ckpt_tensor;

typedef struct {
    char **meta;   /* key, value pairs: architecture and free metadata */
    int nmeta;
    char **train;  /* key, value pairs of the training state */
    int ntrain;
    int has_train; /* set by any nn_ckpt_train_* setter or a train tensor */
    nn_ckpt_tensor *t;
    int n, cap;
    uint8_t *buf;  /* file contents after nn_ckpt_load (tensors point into it) */
    char *path;    /* for messages after loading */
    mp_strindex idx_meta, idx_train, idx_t[2]; /* key -> pair; name -> tensor, per section */
} nn_ckpt;

/* A zeroed nn_ckpt is an empty checkpoint. free accepts a zeroed struct. */
void nn_ckpt_free(nn_ckpt *ck);

/* Key/values (both copied). Setting an existing key replaces it. */
void nn_ckpt_set(nn_ckpt *ck, const char *key, const char *val);
void nn_ckpt_setf(nn_ckpt *ck, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *nn_ckpt_get(const nn_ckpt *ck, const char *key); /* NULL if absent */
void nn_ckpt_train_set(nn_ckpt *ck, const char *key, const char *val);
void nn_ckpt_train_setf(nn_ckpt *ck, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *nn_ckpt_train_get(const nn_ckpt *ck, const char *key);
/* Typed training values: i64 exactly, double with 17 digits (exact round trip). Getters
 * return -1 + mp_err when the key is absent or not a number. */
void nn_ckpt_train_set_i64(nn_ckpt *ck, const char *key, int64_t v);
void nn_ckpt_train_set_f64(nn_ckpt *ck, const char *key, double v);
int nn_ckpt_train_get_i64(const nn_ckpt *ck, const char *key, int64_t *v);
int nn_ckpt_train_get_f64(const nn_ckpt *ck, const char *key, double *v);

/* Add a tensor. copy = 1 copies data now; copy = 0 borrows it (it must outlive the save). */
int nn_ckpt_add(nn_ckpt *ck, int section, const char *name, nn_dtype dtype, int ndim, const int64_t *shape,
                const void *data, int copy);
const nn_ckpt_tensor *nn_ckpt_find(const nn_ckpt *ck, int section, const char *name);
/* Every entry of the table (parameters and buffers) as F32 model tensors, borrowed. */
int nn_ckpt_add_params(nn_ckpt *ck, const nn_params *ps);
/* Copy the model tensors into ps. Every entry of ps must be present with its exact shape and
 * every model tensor must be an entry of ps; errors name the file and the tensor. */
int nn_ckpt_load_params(const nn_ckpt *ck, nn_params *ps);
/* RNG states as U64[4] training tensors "rng.<name>". */
int nn_ckpt_add_rng(nn_ckpt *ck, const char *name, const mp_rng *r);
int nn_ckpt_get_rng(const nn_ckpt *ck, const char *name, mp_rng *r);

int nn_ckpt_save(const nn_ckpt *ck, const char *path);
/* Load and validate everything; on failure ck is empty and mp_err is one line naming PATH. */
int nn_ckpt_load(nn_ckpt *ck, const char *path);
/* Same on a buffer (takes ownership of buf, malloc'd, even on failure); name for messages. */
int nn_ckpt_parse(nn_ckpt *ck, const char *name, uint8_t *buf, size_t len);

#endif
