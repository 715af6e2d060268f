// A loaded model: GGUF mapping, hyper-parameters, vocabulary and views of every weight tensor.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/gguf/gguf.h"
#include "model/hparams.h"
#include "model/kernels/matmul.h"
#include "model/tokenizer/vocab.h"

namespace ilre::model {

struct LayerWeights {
  std::vector<float> attn_norm;       // [n_embd]
  // Q/K/V and gate/up may be row ranges of one fused tensor (Phi-3's attn_qkv and ffn_up).
  WeightMatrix wq;                    // n_embd -> n_head*head_dim_k
  WeightMatrix wk;                    // n_embd -> n_head_kv*head_dim_k
  WeightMatrix wv;                    // n_embd -> n_head_kv*head_dim_v
  std::vector<float> bq, bk, bv;      // projection biases (Qwen2), empty otherwise
  WeightMatrix wo;                    // n_head*head_dim_v -> n_embd
  std::vector<float> q_norm;          // [head_dim_k] (Gemma 3, Qwen3)
  std::vector<float> k_norm;          // [head_dim_k] (Gemma 3, Qwen3)
  std::vector<float> post_attn_norm;  // [n_embd] (Gemma)
  std::vector<float> ffn_norm;        // [n_embd]
  WeightMatrix gate;                  // n_embd -> n_ff
  WeightMatrix up;                    // n_embd -> n_ff
  WeightMatrix down;                  // n_ff -> n_embd
  std::vector<float> post_ffn_norm;   // [n_embd] (Gemma)
};

class Model {
 public:
  // Maps the file and checks every tensor the architecture needs (presence, shape, computable type).
  // Throws Exception(io_failed / bad_gguf / unsupported).
  static std::shared_ptr<const Model> load(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const GgufFile& file() const { return *file_; }
  const HParams& hparams() const { return hparams_; }
  const Vocab& vocab() const { return *vocab_; }
  std::shared_ptr<const Vocab> vocab_ptr() const { return vocab_; }
  // A fingerprint of the architecture, tensor table and a sample of the weights, stable across runs: stores
  // record it so keys made by one model are never scored with another.
  const std::string& fingerprint() const { return fingerprint_; }
  std::string name() const;  // general.name or the file name

  const WeightMatrix& token_embd() const { return token_embd_; }  // n_embd -> n_vocab rows
  const WeightMatrix& output() const { return output_; }          // tied to token_embd when absent
  const std::vector<float>& output_norm() const { return output_norm_; }
  // rope_freqs.weight, or Phi-3's long or short LongRoPE factors as the context selects; empty when absent.
  const std::vector<float>& rope_freq_factors() const { return rope_freq_factors_; }
  const LayerWeights& layer(int64_t il) const { return layers_[static_cast<size_t>(il)]; }

 private:
  Model() = default;
  std::shared_ptr<const GgufFile> file_;
  HParams hparams_;
  std::shared_ptr<const Vocab> vocab_;
  std::string fingerprint_;
  WeightMatrix token_embd_;
  WeightMatrix output_;
  std::vector<float> output_norm_;
  std::vector<float> rope_freq_factors_;
  std::vector<LayerWeights> layers_;
};

}  // namespace ilre::model
