/* train_ops.h: the CPU backend's training ops (kernels/cpu/train_ops.c, compiled once per ISA
 * variant), set into an ops table. */
#ifndef AL_CPU_TRAIN_OPS_H
#define AL_CPU_TRAIN_OPS_H

#include "kernels/kernels.h"

/* Fills o's training entries (matmul_dx ... cross_entropy, matmul_fwd, attention_shared(_bwd),
 * matmul_fwd_n, matmul_dx_n) with the CPU twins; each
 * variant under its own name (ali_cpu_train_ops_v3 ...), ops_cpu.c picks the one in use. */
#define ALI_CPU_TRAIN_OPS_CAT_(a, b) a##b
#define ALI_CPU_TRAIN_OPS_CAT(a, b) ALI_CPU_TRAIN_OPS_CAT_(a, b)
#define ALI_CPU_TRAIN_OPS_FN(sfx) ALI_CPU_TRAIN_OPS_CAT(ali_cpu_train_ops, sfx)
#ifdef ALI_CPU_ISA_SFX
void ALI_CPU_TRAIN_OPS_FN(ALI_CPU_ISA_SFX)(al_ops *o);
#define ali_cpu_train_ops ALI_CPU_TRAIN_OPS_FN(ALI_CPU_ISA_SFX)
#endif

#endif
