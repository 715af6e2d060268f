#include "model/session.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "ilre/error.h"

namespace ilre::model {

Session::Session(const Model& model, ComputePool& pool, int64_t batch, Numerics numerics, std::optional<KvType> kv_type)
    : model_(model),
      forward_(model, pool, numerics),
      cache_(model.hparams(), model.hparams().n_layer,
             numerics == Numerics::exact ? KvType::f32 : kv_type.value_or(KvType::f16)),
      batch_(batch),
      n_ctx_(model.hparams().n_ctx_train) {
  if (batch <= 0) throw Exception(errc::invalid_argument, "batch size must be positive");
}

void Session::set_dca(std::optional<Dca> dca) {
  if (n_past_ != 0) throw Exception(errc::invalid_argument, "DCA can only change between sequences (reset() first)");
  if (dca && !dca->valid()) throw Exception(errc::invalid_argument, "DCA needs chunk > local >= 0");
  forward_.set_dca(dca);
}

void Session::configure(const LongContext& lc, int64_t last_pos) {
  const int64_t trained = model_.hparams().n_ctx_train;
  const std::optional<Dca> dca = resolve_dca(lc.dca, last_pos, lc.dca_context > 0 ? lc.dca_context : trained, trained);
  set_dca(dca);
  set_context(context_for(lc, dca.has_value(), trained));
}

void Session::set_context(int64_t n_ctx) {
  if (n_ctx <= 0 || n_ctx > std::numeric_limits<int32_t>::max()) {
    throw Exception(errc::invalid_argument, "context of " + std::to_string(n_ctx) + " tokens is out of range");
  }
  n_ctx_ = n_ctx;
}

void Session::reset() {
  cache_.clear();
  n_past_ = 0;
  next_pos_ = 0;
}

void Session::check_fits(int64_t n) const {
  const HParams& hp = model_.hparams();
  if (n == 0) throw Exception(errc::invalid_argument, "eval of an empty token list");
  if (n_past_ + n > n_ctx_) {
    throw Exception(errc::out_of_range, "sequence of " + std::to_string(n_past_ + n) + " tokens exceeds the context of " +
                                            std::to_string(n_ctx_) + (n_ctx_ == hp.n_ctx_train ? " the model was trained on" : ""));
  }
}

void Session::run_batch(std::span<const TokenId> tokens, std::span<const int32_t> positions) {
  const HParams& hp = model_.hparams();
  const auto m = static_cast<int64_t>(tokens.size());
  hidden_.resize(static_cast<size_t>(m * hp.n_embd));
  std::vector<int32_t> pos(positions.begin(), positions.end());
  if (pos.empty()) {
    pos.resize(static_cast<size_t>(m));
    std::iota(pos.begin(), pos.end(), static_cast<int32_t>(next_pos_));
  }
  forward_.embed(tokens, hidden_.data());
  forward_.run_layers(hidden_.data(), pos, cache_, 0, hp.n_layer);
  n_past_ += m;
  next_pos_ = static_cast<int64_t>(pos.back()) + 1;
}

void Session::eval_at(std::span<const TokenId> tokens, std::span<const int32_t> positions, std::vector<float>& out) {
  const HParams& hp = model_.hparams();
  const auto n = static_cast<int64_t>(tokens.size());
  check_fits(n);
  if (positions.size() != tokens.size()) throw Exception(errc::invalid_argument, "one position per token is needed");
  for (size_t i = 0; i < positions.size(); ++i) {
    if (positions[i] < (i ? positions[i - 1] + 1 : next_pos_)) {
      throw Exception(errc::invalid_argument, "positions must increase and follow the tokens already evaluated");
    }
  }
  for (int64_t b = 0; b < n; b += batch_) {
    const int64_t m = std::min(batch_, n - b);
    run_batch(tokens.subspan(static_cast<size_t>(b), static_cast<size_t>(m)),
              positions.subspan(static_cast<size_t>(b), static_cast<size_t>(m)));
  }
  const int64_t last = std::min(batch_, n - (n - 1) / batch_ * batch_) - 1;
  out.resize(static_cast<size_t>(hp.n_vocab));
  forward_.logits(hidden_.data(), std::span<const int64_t>(&last, 1), out.data());
  if (&out != &last_logits_) last_logits_ = out;
}

void Session::eval(std::span<const TokenId> tokens, std::vector<float>& out, bool all_logits) {
  const HParams& hp = model_.hparams();
  const auto n = static_cast<int64_t>(tokens.size());
  check_fits(n);
  out.resize(static_cast<size_t>((all_logits ? n : 1) * hp.n_vocab));
  for (int64_t b = 0; b < n; b += batch_) {
    const int64_t m = std::min(batch_, n - b);
    run_batch(tokens.subspan(static_cast<size_t>(b), static_cast<size_t>(m)));
    if (all_logits) {
      std::vector<int64_t> rows(static_cast<size_t>(m));
      std::iota(rows.begin(), rows.end(), 0);
      forward_.logits(hidden_.data(), rows, out.data() + b * hp.n_vocab);
    } else if (b + m == n) {
      const int64_t last = m - 1;
      forward_.logits(hidden_.data(), std::span<const int64_t>(&last, 1), out.data());
    }
  }
  if (&out != &last_logits_) {
    const float* last = out.data() + (all_logits ? (n - 1) * hp.n_vocab : 0);
    last_logits_.assign(last, last + hp.n_vocab);
  }
}

void Session::eval_each(std::span<const TokenId> tokens,
                        const std::function<void(int64_t, std::span<const float>)>& on_row,
                        const std::function<bool(int64_t)>& want) {
  const HParams& hp = model_.hparams();
  // Rows of logits computed per output projection: large enough for an efficient GEMM, small enough that a
  // 262k vocabulary stays at a few tens of MB.
  constexpr int64_t kRowsPerProjection = 16;
  const auto n = static_cast<int64_t>(tokens.size());
  check_fits(n);
  std::vector<float> rows_logits;
  for (int64_t b = 0; b < n; b += batch_) {
    const int64_t m = std::min(batch_, n - b);
    run_batch(tokens.subspan(static_cast<size_t>(b), static_cast<size_t>(m)));
    std::vector<int64_t> rows;
    for (int64_t r = 0; r < m; ++r) {
      // The last row is always computed: generate() continues from it.
      if (!want || want(b + r) || b + r == n - 1) rows.push_back(r);
    }
    for (size_t r0 = 0; r0 < rows.size(); r0 += kRowsPerProjection) {
      const size_t k = std::min<size_t>(kRowsPerProjection, rows.size() - r0);
      rows_logits.resize(k * static_cast<size_t>(hp.n_vocab));
      forward_.logits(hidden_.data(), std::span<const int64_t>(rows.data() + r0, k), rows_logits.data());
      for (size_t r = 0; r < k; ++r) {
        const int64_t index = b + rows[r0 + r];
        const std::span<const float> row(rows_logits.data() + r * static_cast<size_t>(hp.n_vocab),
                                         static_cast<size_t>(hp.n_vocab));
        if (index == n - 1) last_logits_.assign(row.begin(), row.end());
        if (!want || want(index)) on_row(index, row);
      }
    }
  }
}

std::vector<TokenId> Session::generate(std::span<const TokenId> prompt, const GenerateOptions& options) {
  const HParams& hp = model_.hparams();
  Sampler sampler(options.sampler);
  std::vector<TokenId> generated;
  if (!prompt.empty()) eval(prompt, last_logits_);
  if (last_logits_.size() != static_cast<size_t>(hp.n_vocab)) {
    throw Exception(errc::invalid_argument, "generate: no prompt has been evaluated");
  }
  for (int32_t i = 0; i < options.max_tokens; ++i) {
    // Every returned token fits the context (prompt + generated <= n_ctx), as llama.cpp's generation loop:
    // a token that could not be fed back is not produced.
    if (n_past_ >= n_ctx_) break;
    const TokenId next = sampler.sample(last_logits_);
    if (options.stop_at_eog && model_.vocab().is_eog(next)) break;
    generated.push_back(next);
    if (options.on_token && !options.on_token(next)) break;
    if (i + 1 == options.max_tokens || n_past_ >= n_ctx_) break;
    eval(std::span<const TokenId>(&next, 1), last_logits_);
  }
  return generated;
}

}  // namespace ilre::model
