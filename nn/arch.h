/* nn/arch.h — a model's architecture as checkpoint key/values, inferred from a PyTorch
 * state_dict's names and shapes, and models created straight from checkpoints. The glue
 * between nn/model.h (the network) and nn/ckpt.h / nn/safetensors.h (the files).
 *
 * Checkpoint meta keys (shared with trainer/modelio.c): arch (a layout name: resnet_gn,
 * resnet18, resnet18_bn, or "resnet" for any other), arch.in_ch, arch.widths ("32,64,128,256"),
 * arch.blocks ("1,1,1,1"), arch.norm ("group" | "batch"), arch.groups, arch.norm_eps,
 * arch.bn_momentum, classes. Optional, written by the trainer or `model import`: mag,
 * input_size, norm.mean, norm.std ("0.70,0.52,0.66"); anything else is free metadata. */
#ifndef NN_ARCH_H
#define NN_ARCH_H

#include "nn/ckpt.h"
#include "nn/model.h"
#include "nn/safetensors.h"

/* Write cfg into ck's meta; arch is the layout name if cfg is one of the presets. */
void nn_arch_to_ckpt(const nn_model_cfg *cfg, nn_ckpt *ck);
/* Read and check a config from ck's meta; errors name the checkpoint and the key. */
int nn_arch_from_ckpt(const nn_ckpt *ck, nn_model_cfg *cfg);
/* Named layouts: "resnet_gn" (RBD: 32/64/128/256, 1 block per stage, GN 32), "resnet18"
 * (= "resnet18_gn") and "resnet18_bn" (64/128/256/512, 2 blocks per stage). -1 + mp_err on an
 * unknown name. */
int nn_arch_preset(const char *name, int classes, nn_model_cfg *cfg);
/* Infer the config from a state_dict: in_ch and widths from conv shapes, blocks per stage from
 * layers.K names (a block with a shortcut conv starts a new stage), GN vs BN from running_mean,
 * classes from fc.weight. groups is not in a state_dict: pass the GroupNorm group count (32). */
int nn_arch_infer(const nn_st_file *f, const char *name, int groups, nn_model_cfg *cfg);
/* One line: "resnet 4 stages widths 32,64,128,256 blocks 1,1,1,1 GroupNorm(32) 3 classes in_ch 3". */
void nn_arch_describe(const nn_model_cfg *cfg, char *buf, size_t cap);
/* Copy a state_dict into a model's parameters: every model entry present with its exact shape,
 * no extra tensors; integer/half tensors convert to float. Errors name the file and tensor. */
int nn_arch_load_st(const nn_st_file *f, const char *name, nn_params *ps);
/* Create a model from a checkpoint's architecture and load its parameters. */
nn_model *nn_model_from_ckpt(const nn_ckpt *ck, int max_batch, int max_h, int max_w, int with_grad);

#endif
