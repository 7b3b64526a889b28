/* nn/card.h — the model card: what a checkpoint says about the network it holds and the input
 * that network expects. The only reader and writer of these keys, so train --teacher, eval,
 * infer and `magpie model` build the same network from one file and refuse the same bad ones.
 *
 * Checkpoint meta keys (values are text):
 *   arch              layout name: resnet_gn, resnet18, resnet18_bn (the widths, blocks and norm
 *                     must then be that preset's), or resnet for any other layout
 *   arch.widths       "32,64,128,256"  one width per stage, 1..NN_MAX_STAGES stages, 1..8192 each
 *   arch.blocks       "1,1,1,1"        BasicBlocks per stage, 1..64 each
 *   arch.norm         group | batch
 *   arch.groups       GroupNorm groups, dividing every width (default 32 when absent)
 *   arch.in_ch        input channels 1..64 (default 3)
 *   arch.norm_eps     (0, 0.1] (default 1e-5)
 *   arch.bn_momentum  [0, 1] (default 0.1)
 *   classes           1..NN_CARD_MAX_CLASSES
 *   class_names       tab-separated, exactly `classes` names of 1..255 bytes (default class0..)
 *   mag               input magnification 0.5..200 (10 / µm per px, DESIGN.md)
 *   input_size        input side in px, 2..4096
 *   norm.mean         three means of [0,1] pixels, each in [0, 1]
 *   norm.std          three standard deviations, each in [0.001, 10]
 *   method            how it was trained (supervised, rbd, crckd, rbd+crckd; free text < 32 bytes)
 * The input keys (mag, input_size, norm.*) may be absent from an imported network; a use that
 * feeds it patches asks for them with NN_CARD_PATCHES. A key that is present is always checked.
 * Errors are one line: "CKPT: reason" (CKPT = the checkpoint's path, or "checkpoint").
 * A card owns its class names (nn_card_free); reading and writing touch only the card and the
 * checkpoint given, so different cards may be used on different threads. */
#ifndef NN_CARD_H
#define NN_CARD_H

#include <stdint.h>

#include "nn/ckpt.h"
#include "nn/model.h"

#define NN_CARD_MAX_CLASSES 64

typedef struct {
    char arch[32];          /* layout name (see above) */
    nn_model_cfg cfg;       /* the network; cfg.classes is the class count */
    char **class_names;     /* cfg.classes names, owned (NULL until read or set) */
    double mag;             /* 0 = not recorded */
    int size;               /* 0 = not recorded */
    int has_norm;           /* mean/std recorded (else mean 0, std 1) */
    float mean[3], std[3];
    char method[32];        /* "" = not recorded */
} nn_card;

/* What a use needs beyond the network: NN_CARD_PATCHES = it feeds RGB patches (eval, infer, a
 * teacher): in_ch 3, mag, input_size, norm.mean and norm.std must all be recorded. */
enum { NN_CARD_NETWORK = 0, NN_CARD_PATCHES = 1 };

/* Read and check the card of ck (errors name ck->path). On failure the card is empty. */
int nn_card_read(const nn_ckpt *ck, int need, nn_card *card);
/* Check every value of a card against the bounds above; name is for the message. */
int nn_card_check(const nn_card *card, const char *name);
/* Write every key of the card (input keys only when recorded). */
void nn_card_write(const nn_card *card, nn_ckpt *ck);
/* A card for a config: arch named after the preset it equals ("resnet" otherwise), nothing
 * about the input recorded, class names class0... */
void nn_card_from_cfg(nn_card *card, const nn_model_cfg *cfg);
/* Replace the class names (copied; n must equal cfg.classes). */
void nn_card_set_names(nn_card *card, char *const *names, int n);
void nn_card_free(nn_card *card); /* accepts a zeroed card */

/* Refuse a model whose magnification is none of the n a use offers (within 1%): "CKPT: the
 * model takes 10x patches; WHERE has 1.25x, 20x" (or "has none"). */
int nn_card_check_mag(const nn_card *card, const char *name, const double *have, int n, const char *where);

/* The network's input for n RGB patches (side x side x 3 bytes each, row-major): n x 3 x side x
 * side floats (x / 255 - mean) / std, the expression the trainer's loader uses on un-augmented
 * images, so eval and infer feed identical tensors for identical pixels. */
void nn_card_input(const nn_card *card, const uint8_t *rgb, int n, int side, float *out);

/* Build the network of ck (card read with NN_CARD_NETWORK) and load its parameters. */
nn_model *nn_model_from_ckpt(const nn_ckpt *ck, int max_batch, int max_h, int max_w, int with_grad);
/* Load a checkpoint file: its card (with need) and, if model is not NULL, the network for
 * batches of max_batch at the card's input size (NN_CARD_PATCHES) or max_side px. */
int nn_card_load(const char *path, int need, int max_batch, int max_side, nn_card *card, nn_model **model);

#endif
