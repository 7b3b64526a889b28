/* trainer/modelio.c — the prediction loop shared by validation during training and `magpie
 * eval` (what a checkpoint says about itself is nn/card.h's). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "nn/losses.h"
#include "trainer/trainer.h"

int tr_predict(nn_model *m, tr_loader *L, float *prob, int *y, int *slide)
{
    if (tr_loader_start(L, 0) < 0) return -1;
    const tr_batch *b;
    int k = nn_model_config(m)->classes, S = tr_loader_size(L, 0), off = 0, rc;
    while ((rc = tr_loader_next(L, &b)) == 1) {
        if (nn_model_forward(m, b->x, b->n, S, S, 0) < 0) return -1;
        nn_softmax_rows(prob + (size_t)off * k, nn_model_logits(m), b->n, k);
        for (int i = 0; i < b->n; i++) {
            if (y) y[off + i] = b->y[i];
            if (slide) slide[off + i] = b->slide[i];
        }
        off += b->n;
    }
    return rc < 0 ? -1 : off;
}
