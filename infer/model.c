/* infer/model.c — a checkpoint as an inference function: the network in eval mode plus what
 * the checkpoint says about its input (magnification, patch size, normalisation) and classes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "infer/infer.h"
#include "infer/internal.h"
#include "nn/card.h"
#include "nn/losses.h"

_Static_assert(NN_CARD_MAX_CLASSES <= INFER_MAX_CLASSES, "infer holds every class a card allows");

struct infer_model {
    nn_model *net;
    nn_card card; /* classes, names, mag, input size, normalisation */
    int max_batch;
    float *x;     /* max_batch x 3 x size x size */
};

infer_model *infer_model_load(const char *path, int max_batch)
{
    infer_model *m = mp_xcalloc(1, sizeof *m);
    nn_ckpt ck = {0};
    /* the card first (for the input size), then the network planned for the batch */
    if (nn_ckpt_load(&ck, path) || nn_card_read(&ck, NN_CARD_PATCHES, &m->card)) goto fail;
    m->max_batch = max_batch < 1 ? infer_auto_batch(m->card.size) : max_batch;
    if (!(m->net = nn_model_from_ckpt(&ck, m->max_batch, m->card.size, m->card.size, 0))) goto fail;
    m->x = mp_xmalloc(sizeof(float) * (size_t)m->max_batch * 3 * m->card.size * m->card.size);
    nn_ckpt_free(&ck);
    return m;
fail:
    nn_ckpt_free(&ck);
    infer_model_free(m);
    return NULL;
}

void infer_model_free(infer_model *m)
{
    if (!m) return;
    nn_model_free(m->net);
    nn_card_free(&m->card);
    free(m->x);
    free(m);
}

int infer_model_classes(const infer_model *m) { return m->card.cfg.classes; }
double infer_model_mag(const infer_model *m) { return m->card.mag; }
int infer_model_size(const infer_model *m) { return m->card.size; }
char *const *infer_model_names(const infer_model *m) { return m->card.class_names; }

int infer_model_predict(infer_model *m, const uint8_t *rgb, int n, float *prob)
{
    int S = m->card.size, K = m->card.cfg.classes;
    for (int b0 = 0; b0 < n; b0 += m->max_batch) {
        int nb = n - b0 < m->max_batch ? n - b0 : m->max_batch;
        nn_card_input(&m->card, rgb + (size_t)b0 * S * S * 3, nb, S, m->x);
        if (nn_model_forward(m->net, m->x, nb, S, S, 0)) return -1;
        nn_softmax_rows(prob + (size_t)b0 * K, nn_model_logits(m->net), nb, K);
    }
    return 0;
}
