/* torchmath.h: float32 exp and log bit-identical to torch 1.13's AVX2 CPU kernels (SLEEF). */
#ifndef SD_TORCHMATH_H
#define SD_TORCHMATH_H

/* torch.exp(x) for float32 x: 0 below -104, +inf above 100. */
float sd__torch_expf(float x);
/* torch.log(x) for float32 x: -inf at 0, NaN below 0. */
float sd__torch_logf(float x);

#endif
