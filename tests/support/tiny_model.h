// Tiny random-weight GGUF models written by tests: any architecture ilre supports, any weight type, with
// stories260K's 512-token vocabulary so tokenisation works.
#pragma once

#include <cstdint>
#include <string>

#include "model/gguf/ggml_type.h"

namespace ilre::test {

struct TinyModelSpec {
  std::string arch = "llama";  // "llama" or "gemma3"
  int64_t n_embd = 64;
  int64_t n_layer = 3;
  int64_t n_head = 4;
  int64_t n_head_kv = 2;
  int64_t head_dim = 16;
  int64_t n_ff = 128;
  int64_t n_ctx = 1024;
  int64_t sliding_window = 0;  // gemma3 only
  model::GgmlType weight_type = model::GgmlType::F32;  // 2-D weights; norms stay F32
  uint64_t seed = 1;
};

// Writes the model into dir and returns its path.
std::string write_tiny_model(const std::string& dir, const TinyModelSpec& spec);

}  // namespace ilre::test
