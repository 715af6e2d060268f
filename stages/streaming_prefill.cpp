#include "stages/streaming_prefill.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "ilre/error.h"

namespace ilre::stages {
namespace {

constexpr uint32_t kStateMagic = 0x53504631;       // "SPF1": absolute positions
constexpr uint32_t kCacheStateMagic = 0x53504632;  // "SPF2": cache positions, the sink's keys follow the header

model::KvType cache_type(model::Numerics n) {
  return n == model::Numerics::exact ? model::KvType::f32 : model::KvType::f16;
}

}  // namespace

std::optional<PrefillPositions> prefill_positions_from_name(std::string_view name) {
  if (name == "absolute") return PrefillPositions::absolute;
  if (name == "cache") return PrefillPositions::cache;
  return std::nullopt;
}

std::string_view prefill_positions_name(PrefillPositions p) { return p == PrefillPositions::cache ? "cache" : "absolute"; }

PrefillSettings PrefillSettings::clamped(const model::HParams& hp) const {
  PrefillSettings s = *this;
  if (s.layer < 0 || s.layer >= hp.n_layer) {
    throw Exception(errc::invalid_argument, "retrieval layer " + std::to_string(s.layer) + " is outside 0.." +
                                                std::to_string(hp.n_layer - 1));
  }
  s.chunk = std::clamp<int64_t>(s.chunk, 1, std::max<int64_t>(1, hp.n_ctx_train / 2));
  s.sink = std::clamp<int64_t>(s.sink, 0, hp.n_ctx_train / 4);
  s.window = std::clamp<int64_t>(s.window, 1, std::max<int64_t>(1, hp.n_ctx_train - s.sink - s.chunk));
  return s;
}

StreamingPrefill::StreamingPrefill(const model::Model& model, model::ComputePool& pool, PrefillSettings settings)
    : model_(model),
      settings_(settings.clamped(model.hparams())),
      forward_(model, pool, settings.numerics),
      cache_(model.hparams(), settings_.layer, cache_type(settings.numerics)) {}

StreamingPrefill::StreamingPrefill(const model::Model& model, model::ComputePool& pool, PrefillSettings settings,
                                   std::span<const uint8_t> state)
    : StreamingPrefill(model, pool, settings) {
  if (state.size() < 20) throw Exception(errc::checksum_mismatch, "streaming state is truncated");
  uint32_t magic;
  std::memcpy(&magic, state.data(), 4);
  if (magic != kStateMagic && magic != kCacheStateMagic) throw Exception(errc::checksum_mismatch, "not a streaming-prefill state");
  const bool cache_positions = settings_.positions == PrefillPositions::cache;
  if ((magic == kCacheStateMagic) != cache_positions) {
    throw Exception(errc::model_mismatch, std::string("streaming state was made with prefill.positions=") +
                                              (magic == kCacheStateMagic ? "cache" : "absolute") + ", not " +
                                              std::string(prefill_positions_name(settings_.positions)));
  }
  int64_t layer;
  std::memcpy(&layer, state.data() + 4, 8);
  std::memcpy(&next_pos_, state.data() + 12, 8);
  if (layer != settings_.layer) {
    throw Exception(errc::model_mismatch, "streaming state was made at layer " + std::to_string(layer) +
                                              ", not " + std::to_string(settings_.layer));
  }
  size_t at = 20;
  if (cache_positions) {
    if (state.size() < at + 8) throw Exception(errc::checksum_mismatch, "streaming state is truncated");
    std::memcpy(&sink_rows_, state.data() + at, 8);
    at += 8;
    const auto width = static_cast<size_t>(model.hparams().n_embd_k());
    if (sink_rows_ < 0 || sink_rows_ > settings_.sink ||
        state.size() < at + static_cast<size_t>(sink_rows_) * width * 4 * static_cast<size_t>(settings_.layer)) {
      throw Exception(errc::checksum_mismatch, "streaming state: damaged sink keys");
    }
    if (sink_rows_ > 0) {
      sink_keys_.resize(static_cast<size_t>(settings_.layer));
      for (auto& rows : sink_keys_) {
        rows.resize(static_cast<size_t>(sink_rows_) * width);
        std::memcpy(rows.data(), state.data() + at, rows.size() * 4);
        at += rows.size() * 4;
      }
    }
  }
  cache_ = model::KvCache::deserialize(model.hparams(), state.subspan(at));
}

std::vector<uint8_t> StreamingPrefill::save_state() const {
  // The cache image last, the header (and the sink's keys) in front of it: one allocation of the state's
  // size (plus room for the document state's trailer) instead of a copy per step.
  const bool cache_positions = settings_.positions == PrefillPositions::cache;
  size_t sink_bytes = 0;
  for (const auto& rows : sink_keys_) sink_bytes += rows.size() * 4;
  std::vector<uint8_t> image = cache_.serialize();
  std::vector<uint8_t> out;
  const size_t head = 20 + (cache_positions ? 8 + sink_bytes : 0);
  out.reserve(head + image.size() + 64);
  out.resize(head);
  std::memcpy(out.data(), cache_positions ? &kCacheStateMagic : &kStateMagic, 4);
  std::memcpy(out.data() + 4, &settings_.layer, 8);
  std::memcpy(out.data() + 12, &next_pos_, 8);
  if (cache_positions) {
    std::memcpy(out.data() + 20, &sink_rows_, 8);
    size_t at = 28;
    for (const auto& rows : sink_keys_) {
      std::memcpy(out.data() + at, rows.data(), rows.size() * 4);
      at += rows.size() * 4;
    }
  }
  out.insert(out.end(), image.begin(), image.end());
  return out;
}

void StreamingPrefill::capture_sink() {
  if (settings_.positions != PrefillPositions::cache || !sink_keys_.empty() || settings_.sink == 0 ||
      settings_.layer == 0 || cache_.size(0) < settings_.sink) {
    return;
  }
  sink_rows_ = settings_.sink;
  sink_keys_.resize(static_cast<size_t>(settings_.layer));
  for (int64_t l = 0; l < settings_.layer; ++l) {
    auto& rows = sink_keys_[static_cast<size_t>(l)];
    rows.resize(static_cast<size_t>(sink_rows_ * cache_.k_width()));
    cache_.read_keys(l, 0, sink_rows_, rows.data());
  }
}

void StreamingPrefill::place_sink(model::KvCache& cache, int64_t first_pos) {
  if (sink_keys_.empty()) return;  // the caches have not held the whole sink yet: nothing was evicted
  const int64_t held = cache.size(0);
  const int64_t next = held > sink_rows_ ? cache.positions(0)[static_cast<size_t>(sink_rows_)] : first_pos;
  const auto shift = static_cast<int32_t>(next - sink_rows_);
  if (shift <= 0 || cache.positions(0)[0] == shift) return;  // contiguous already, or placed for this window
  const std::vector<int32_t> turn(static_cast<size_t>(sink_rows_), shift);
  std::vector<int32_t> at(static_cast<size_t>(sink_rows_));
  std::iota(at.begin(), at.end(), shift);
  std::vector<float> rows;
  for (int64_t l = 0; l < settings_.layer; ++l) {
    rows = sink_keys_[static_cast<size_t>(l)];
    forward_.apply_rope(l, rows.data(), model_.hparams().n_head_kv, turn);
    // A RoPE attention factor (Phi-3's LongRoPE) scales what it rotates; these keys carry it already.
    if (const float f = model_.hparams().rope(l).attn_factor; f != 1.0f) {
      for (float& x : rows) x /= f;
    }
    cache.overwrite_keys(l, 0, sink_rows_, rows.data(), at.data());
  }
}

void StreamingPrefill::forward_chunk(std::span<const model::TokenId> tokens, int64_t first_pos,
                                     model::KvCache& cache, std::vector<int32_t>& pos) {
  const auto n = static_cast<int64_t>(tokens.size());
  if (first_pos + n > std::numeric_limits<int32_t>::max()) {
    throw Exception(errc::out_of_range, "document exceeds 2^31 tokens");
  }
  pos.resize(static_cast<size_t>(n));
  std::iota(pos.begin(), pos.end(), static_cast<int32_t>(first_pos));
  hidden_.resize(static_cast<size_t>(n * model_.hparams().n_embd));
  place_sink(cache, first_pos);
  forward_.embed(tokens, hidden_.data());
  forward_.run_layers(hidden_.data(), pos, cache, 0, settings_.layer);
}

void StreamingPrefill::run(std::span<const model::TokenId> tokens, std::vector<float>& keys) { stream(tokens, &keys); }

void StreamingPrefill::advance(std::span<const model::TokenId> tokens) { stream(tokens, nullptr); }

void StreamingPrefill::jump_to(int64_t pos) {
  if (pos <= next_pos_ || pos % settings_.chunk != 0) {
    throw Exception(errc::invalid_argument, "streaming prefill cannot jump from " + std::to_string(next_pos_) +
                                                " to " + std::to_string(pos) + " (forward, to a chunk boundary)");
  }
  cache_.evict_middle(settings_.sink, 0);
  next_pos_ = pos;
}

int64_t StreamingPrefill::receptive_field() const {
  const int64_t chunks_per_window = (settings_.window + settings_.chunk - 1) / settings_.chunk;
  return settings_.layer * chunks_per_window * settings_.chunk;
}

void StreamingPrefill::stream(std::span<const model::TokenId> tokens, std::vector<float>* keys) {
  const model::HParams& hp = model_.hparams();
  std::vector<int32_t> pos;
  for (size_t b = 0; b < tokens.size(); b += static_cast<size_t>(settings_.chunk)) {
    const auto chunk = tokens.subspan(b, std::min(tokens.size() - b, static_cast<size_t>(settings_.chunk)));
    forward_chunk(chunk, next_pos_, cache_, pos);
    if (keys) {
      const size_t at = keys->size();
      keys->resize(at + chunk.size() * static_cast<size_t>(hp.n_embd_k()));
      forward_.attention_inputs(settings_.layer, hidden_.data(), pos, nullptr, keys->data() + at, /*rope=*/false);
    }
    capture_sink();  // before the first eviction, while the sink still sits at 0..S-1
    // The Λ mask: later chunks see the sink and the last W tokens of every streamed layer.
    cache_.evict_middle(settings_.sink, settings_.window);
    next_pos_ += static_cast<int64_t>(chunk.size());
  }
}

std::vector<float> StreamingPrefill::encode_query(std::span<const model::TokenId> tokens) {
  if (tokens.empty()) throw Exception(errc::invalid_argument, "the query has no tokens");
  model::KvCache scratch = cache_;  // the question must not change the document's state
  std::vector<int32_t> pos;
  int64_t first = next_pos_;
  std::vector<float> q;
  // Chunked like the document so a long question is bounded the same way.
  for (size_t b = 0; b < tokens.size(); b += static_cast<size_t>(settings_.chunk)) {
    const auto chunk = tokens.subspan(b, std::min(tokens.size() - b, static_cast<size_t>(settings_.chunk)));
    forward_chunk(chunk, first, scratch, pos);
    const size_t at = q.size();
    q.resize(at + chunk.size() * static_cast<size_t>(model_.hparams().n_embd_q()));
    forward_.attention_inputs(settings_.layer, hidden_.data(), pos, q.data() + at, nullptr, /*rope=*/false);
    first += static_cast<int64_t>(chunk.size());
  }
  return q;
}

}  // namespace ilre::stages
