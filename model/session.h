// One text sequence run through the whole model: batched prefill, then token-by-token decoding.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "model/kernels/compute_pool.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/transformer.h"

namespace ilre::model {

struct GenerateOptions {
  int32_t max_tokens = 64;
  SamplerParams sampler;
  bool stop_at_eog = true;
  // Called with each generated id; return false to stop early (client went away, user pressed Ctrl-C).
  std::function<bool(TokenId)> on_token;
};

class Session {
 public:
  // batch: prefill chunk size (tokens per forward call).
  // kv_type: the K/V cache element type of llama_cpp numerics; unset = F16 (llama.cpp's default cache).
  // llama_cpp numerics with an F32 cache is llama.cpp run with `--cache-type-k f32 --cache-type-v f32`.
  // Numerics::exact always caches F32: the exact mode has no rounding anywhere.
  Session(const Model& model, ComputePool& pool, int64_t batch = 512, Numerics numerics = Numerics::llama_cpp,
          std::optional<KvType> kv_type = std::nullopt);

  // Feeds tokens at positions n_past().. and returns the logits F32 [n_vocab] after the last one.
  // With all_logits, out receives F32 [tokens.size(), n_vocab] instead.
  void eval(std::span<const TokenId> tokens, std::vector<float>& out, bool all_logits = false);

  // Feeds tokens at explicit, increasing positions (ILRe's "original positions" final pass: recalled tokens
  // keep their document positions, gaps and all); later calls continue after the last one. Only the
  // number of tokens is limited by the trained context, not the position values.
  void eval_at(std::span<const TokenId> tokens, std::span<const int32_t> positions, std::vector<float>& out);

  // Feeds tokens like eval() and hands the logits of every position to on_row(index, logits[n_vocab]) a few
  // rows at a time, so a long prompt never holds [n, n_vocab] floats at once.
  // want(index), when given, selects the rows whose logits are computed (the output projection is the
  // largest matrix of a small model).
  void eval_each(std::span<const TokenId> tokens,
                 const std::function<void(int64_t index, std::span<const float> logits)>& on_row,
                 const std::function<bool(int64_t index)>& want = {});

  // Prefills prompt (if not empty) then samples up to max_tokens ids; returns them (EOG excluded).
  std::vector<TokenId> generate(std::span<const TokenId> prompt, const GenerateOptions& options);

  // Dual chunk attention (model/dca.h) for the next sequence; only while the session is empty (after
  // reset()), since the cached keys are rotated by it.
  void set_dca(std::optional<Dca> dca);
  const std::optional<Dca>& dca() const { return forward_.dca(); }
  // Tokens the session may hold: the model's trained context unless raised (as llama.cpp's -c past
  // n_ctx_train; past it plain RoPE meets distances it never trained on, which DCA avoids).
  void set_context(int64_t n_ctx);
  // Both of the above for a sequence whose last position (prompt and answer) will be last_pos, as
  // decode.dca / decode.context ask.
  void configure(const LongContext& lc, int64_t last_pos);
  int64_t context() const { return n_ctx_; }

  int64_t n_past() const { return n_past_; }
  // Logits F32 [n_vocab] after the last token fed by eval() / eval_each() / generate().
  const std::vector<float>& last_logits() const { return last_logits_; }
  void reset();
  const KvCache& cache() const { return cache_; }

 private:
  void check_fits(int64_t n) const;
  // One forward chunk at positions (default: n_past_..); leaves its hidden states in hidden_.
  void run_batch(std::span<const TokenId> tokens, std::span<const int32_t> positions = {});

  const Model& model_;
  Forward forward_;
  KvCache cache_;
  int64_t batch_;
  int64_t n_ctx_;
  int64_t n_past_ = 0;    // tokens in the cache
  int64_t next_pos_ = 0;  // position of the next token
  std::vector<float> hidden_;
  std::vector<float> last_logits_;
};

}  // namespace ilre::model
