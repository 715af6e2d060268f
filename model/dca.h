// Dual Chunk Attention (DCA; An et al. 2024, "Training-Free Long-Context Scaling of Large Language Models",
// the ChunkLlama rules): a model attends over more tokens than it was trained on without ever seeing a
// relative distance larger than its training showed it.
//
// The sequence is cut into chunks of `period` = chunk - local tokens from position 0. Keys are rotated at
// p mod period. A query at p attends
//   - to keys of its own chunk with its intra-chunk position p mod period (distances as usual);
//   - to keys of the previous chunk with min(p mod period + period, chunk): distances in (0, chunk];
//   - to keys of every older chunk with the constant position `chunk`: distances in (local, chunk].
// One softmax runs over the union, which is the log-sum-exp merge of the three partial attentions.
// For a sequence shorter than `period` all three rules reduce to plain RoPE.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ilre::model {

struct Dca {
  int64_t chunk = 0;  // s: the largest relative position a query ever uses
  int64_t local = 0;  // w: how far back the previous chunk's keys are seen at their true distance

  // ChunkLlama's rule for a model trained on `trained` tokens: s = 3/4 of it, w = 1/8 of it.
  static Dca for_context(int64_t trained) { return Dca{trained * 3 / 4, trained / 8}; }

  int64_t period() const { return chunk - local; }
  int64_t chunk_of(int32_t pos) const { return pos / period(); }
  int32_t key_pos(int32_t pos) const { return static_cast<int32_t>(pos % period()); }
  int32_t intra_pos(int32_t pos) const { return key_pos(pos); }
  int32_t successive_pos(int32_t pos) const {
    return static_cast<int32_t>(std::min<int64_t>(pos % period() + period(), chunk));
  }
  int32_t inter_pos() const { return static_cast<int32_t>(chunk); }
  bool valid() const { return local >= 0 && chunk > local; }
};

// decode.dca: off | auto (when the sequence would outgrow the trained context) | on.
enum class DcaMode { off, automatic, on };

inline std::optional<DcaMode> dca_mode_from_name(std::string_view name) {
  if (name == "off") return DcaMode::off;
  if (name == "auto") return DcaMode::automatic;
  if (name == "on") return DcaMode::on;
  return std::nullopt;
}

// decode.dca, decode.dca_context and decode.context as the model layer takes them.
struct LongContext {
  DcaMode dca = DcaMode::automatic;
  int64_t dca_context = 0;  // 0: the model's trained context
  int64_t context = 0;      // 0: the trained context, 8x it under DCA
};

// Under DCA no query meets a distance past `chunk`, so the sequence is bounded by memory, not by the
// model; 8x the trained context (256K tokens for a 32K model) keeps an unbounded request from filling
// the machine while leaving DCA's published range (ChunkLlama: 4K-trained Llama 2 at 100K+) in reach.
constexpr int64_t kDcaContextFactor = 8;

// The most tokens a sequence may hold: decode.context when set, else the trained context, or
// kDcaContextFactor x it when the sequence runs with DCA.
inline int64_t context_for(const LongContext& lc, bool with_dca, int64_t n_ctx_train) {
  if (lc.context > 0) return lc.context;
  return with_dca ? kDcaContextFactor * n_ctx_train : n_ctx_train;
}

// The most tokens any sequence may hold under these settings (what a compressed prompt is cut to).
inline int64_t sequence_capacity(const LongContext& lc, int64_t n_ctx_train) {
  return context_for(lc, lc.dca != DcaMode::off, n_ctx_train);
}

// Whether a sequence whose last position is last_pos (prompt plus the tokens still to be generated) runs
// with DCA, and with which chunks: trained is the context the chunks are cut from (the model's own unless
// configured), n_ctx_train the model's trained context that `auto` compares against.
inline std::optional<Dca> resolve_dca(DcaMode mode, int64_t last_pos, int64_t trained, int64_t n_ctx_train) {
  if (mode == DcaMode::off) return std::nullopt;
  if (mode == DcaMode::automatic && last_pos < n_ctx_train) return std::nullopt;
  return Dca::for_context(trained);
}

}  // namespace ilre::model
