/* nn/arch.h — network layouts: the named presets, a config inferred from a PyTorch
 * state_dict's names and shapes, and state_dict parameters loaded with exact name/shape checks.
 * What a checkpoint says about its network is the model card's business (nn/card.h).
 * -1 + mp_err "FILE: reason" on failure; no state, nothing kept: any thread. */
#ifndef NN_ARCH_H
#define NN_ARCH_H

#include "nn/model.h"
#include "nn/safetensors.h"

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

#endif
