/* trainer/supervised.c — label-only training: cross-entropy of the student's logits on its
 * labelled patches (unweighted; --sampling balances the classes by drawing instead). */
#include "nn/losses.h"
#include "trainer/run.h"

static double supervised_loss(tr_run *R, const tr_batch *b, int epoch, double parts[TR_NTERMS])
{
    (void)epoch;
    parts[TR_CE] = nn_cross_entropy(R->dz, nn_model_logits(R->student), b->y, b->n, R->k, NULL, 0, 1.0f);
    return parts[TR_CE];
}

const tr_method tr_method_supervised = {
    .name = "supervised",
    .loss = supervised_loss,
};
