// Attention logits of stored keys against query rows, straight from 16-bit channel-major keys: what a key
// store's channel-shuffled segment decodes to without a transpose or a conversion. Scoring a 1M-token
// document runs this over every key twice (the softmax's two passes), so it converts and packs a block of
// keys at a time into a small F32 panel and multiplies from there, instead of materialising the segment in
// F32 and handing it to a general GEMM that packs it again.
#pragma once

#include <cstdint>

namespace ilre::model::kernels {

enum class Key16 : uint8_t { f16, bf16 };

// logits[c * ld + j] = sum_p q[c * d + p] * key(p, j0 + j) for j < t and c < cols, where key(p, j) is
// keys[p * n + j] (F16 or BF16 bits): row p of a [d, n] channel-major block. Sums run over p in order with
// FMA, so a logit's bits depend only on its inputs, not on t, j0 or cols.
void key_logits_16(const uint16_t* keys, int64_t n, Key16 type, int64_t j0, int64_t t, int64_t d, const float* q,
                   int64_t cols, float* logits, int64_t ld);

// The same with plain scalar loops (the reference the vector form is tested against).
void key_logits_16_scalar(const uint16_t* keys, int64_t n, Key16 type, int64_t j0, int64_t t, int64_t d,
                          const float* q, int64_t cols, float* logits, int64_t ld);

}  // namespace ilre::model::kernels
