/* train_ops.h: the CPU backend's training ops (kernels/cpu/train_ops.c), set into an ops table. */
#ifndef AL_CPU_TRAIN_OPS_H
#define AL_CPU_TRAIN_OPS_H

#include "kernels/kernels.h"

/* Fills o's training entries (matmul_dx ... cross_entropy) with the CPU twins. */
void ali_cpu_train_ops(al_ops *o);

#endif
