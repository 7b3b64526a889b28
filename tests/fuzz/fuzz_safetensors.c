/* tests/fuzz/fuzz_safetensors.c — libFuzzer target: nn_st_parse on arbitrary bytes, then what
 * `magpie model import` does with a parsed file: metadata look-ups, conversion of every tensor
 * to float, architecture inference and (for small inferred models) loading the parameters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/arch.h"
#include "nn/safetensors.h"
#include "tests/fuzz/fuzz.h"

/* Models the harness builds from an inferred config: a larger one is a legitimate allocation
 * (bounding what a file may declare is nn's policy), not something to spend fuzz time on. */
static int small_cfg(const nn_model_cfg *c)
{
    if (c->in_ch > 64) return 0;
    int64_t w = 0;
    for (int i = 0; i < c->nstages; i++) {
        if (c->widths[i] > 256 || c->blocks[i] > 4) return 0;
        w += (int64_t)c->widths[i] * c->widths[i] * 9 * 2 * c->blocks[i];
    }
    return w <= (1 << 21) && c->classes <= 1024;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (size) memcpy(buf, data, size);
    nn_st_file f;
    int rc = nn_st_parse("fuzz.safetensors", buf, size, &f);
    fuzz_check_err(rc);
    if (rc != 0) return 0; /* nn_st_parse freed buf */
    (void)nn_st_meta(&f, "format");
    for (int i = 0; i < f.n; i++) {
        const nn_st_tensor *t = &f.t[i];
        if (nn_st_find(&f, t->name) == NULL) abort();
        float *dst = malloc(t->numel ? t->numel * sizeof(float) : 1);
        nn_st_to_f32(t, dst);
        free(dst);
    }
    nn_model_cfg cfg;
    rc = nn_arch_infer(&f, "fuzz.safetensors", 32, &cfg);
    fuzz_check_err(rc);
    if (rc == 0) {
        char d[512];
        nn_arch_describe(&cfg, d, sizeof d);
        if (nn_model_cfg_check(&cfg) == 0 && small_cfg(&cfg)) {
            nn_model *m = nn_model_create(&cfg, 1, 32, 32, 0);
            if (m) {
                fuzz_check_err(nn_arch_load_st(&f, "fuzz.safetensors", nn_model_params(m)));
                nn_model_free(m);
            }
        }
    }
    nn_st_free(&f);
    return 0;
}
