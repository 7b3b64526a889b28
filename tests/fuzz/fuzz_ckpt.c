/* tests/fuzz/fuzz_ckpt.c — libFuzzer target: the checkpoint (.mpk) loader, then what `magpie
 * model info/eval` and `train --resume` read from a loaded checkpoint: training values, RNG
 * states, the architecture, and (for small architectures) the model with its parameters.
 *
 * Every byte of a .mpk is covered by a CRC, so random mutations almost never get past the
 * header check. The first input byte therefore selects repairs applied before parsing, which
 * let the fuzzer reach the table and tensor checks with consistent CRCs:
 *   bit 0  set table_off, data_off and file_len from header_len, ntensors and the input size
 *   bit 1  recompute each tensor's data CRC where its declared range lies inside the input
 *   bit 7  leave the header CRC as it is (otherwise it is recomputed when the table fits)
 * The rest of the input is the file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "nn/arch.h"
#include "nn/card.h"
#include "nn/ckpt.h"
#include "tests/fuzz/fuzz.h"

enum { PRE = 64, REC = 160 };

static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint64_t up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static void repair(uint8_t *b, size_t len, unsigned how)
{
    if (len < PRE) return;
    uint64_t hlen = get64(b + 16), nt = get64(b + 24);
    if (how & 1) {
        if (hlen > len || nt > len / REC + 1) return;
        uint64_t table_off = up(PRE + hlen, 8);
        put64(b + 32, table_off);
        put64(b + 40, up(table_off + REC * nt, 64));
        put64(b + 48, len);
    }
    uint64_t table_off = get64(b + 32), data_off = get64(b + 40);
    if (table_off > len || nt > len / REC || table_off + REC * nt > len || data_off > len || data_off < PRE) return;
    if (how & 2)
        for (uint64_t i = 0; i < nt; i++) {
            uint8_t *r = b + table_off + REC * i;
            uint64_t off = get64(r + 136), nb = get64(r + 144);
            if (off <= len - data_off && nb <= len - data_off - off) put32(r + 152, mp_crc32(0, b + data_off + off, nb));
        }
    if (!(how & 128)) put32(b + 56, mp_crc32(mp_crc32(0, b, 56), b + PRE, data_off - PRE));
}

static int small_cfg(const nn_model_cfg *c)
{
    if (c->in_ch > 64 || c->classes > 1024) return 0;
    int64_t w = 0;
    for (int i = 0; i < c->nstages; i++) {
        if (c->widths[i] > 256 || c->blocks[i] > 4) return 0;
        w += (int64_t)c->widths[i] * c->widths[i] * 9 * 2 * c->blocks[i];
    }
    return w <= (1 << 21);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);
    if (len) memcpy(buf, data + 1, len);
    repair(buf, len, data[0]);
    nn_ckpt ck;
    int rc = nn_ckpt_parse(&ck, "fuzz.mpk", buf, len); /* takes buf */
    fuzz_check_err(rc);
    if (rc != 0) return 0;
    int64_t i64;
    double f64;
    mp_rng r;
    (void)nn_ckpt_train_get_i64(&ck, "step", &i64);
    (void)nn_ckpt_train_get_i64(&ck, "epoch", &i64);
    (void)nn_ckpt_train_get_f64(&ck, "lr", &f64);
    (void)nn_ckpt_get_rng(&ck, "train", &r);
    (void)nn_ckpt_get(&ck, "classes");
    for (int i = 0; i < ck.n; i++)
        if (nn_ckpt_find(&ck, ck.t[i].section, ck.t[i].name) != &ck.t[i]) abort();
    nn_card card;
    fuzz_check_err(nn_card_read(&ck, NN_CARD_PATCHES, &card));
    nn_card_free(&card);
    rc = nn_card_read(&ck, NN_CARD_NETWORK, &card);
    fuzz_check_err(rc);
    nn_model_cfg cfg = card.cfg;
    nn_card_free(&card);
    if (rc == 0 && small_cfg(&cfg)) {
        char d[512];
        nn_arch_describe(&cfg, d, sizeof d);
        nn_model *m = nn_model_from_ckpt(&ck, 1, 32, 32, 0);
        if (!m) fuzz_check_err(-1);
        nn_model_free(m);
    }
    nn_ckpt_free(&ck);
    return 0;
}
