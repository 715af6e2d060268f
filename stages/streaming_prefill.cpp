#include "stages/streaming_prefill.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "ilre/error.h"

namespace ilre::stages {
namespace {

constexpr uint32_t kStateMagic = 0x53504631;  // "SPF1"

model::KvType cache_type(model::Numerics n) {
  return n == model::Numerics::exact ? model::KvType::f32 : model::KvType::f16;
}

}  // namespace

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
  if (state.size() < 16) throw Exception(errc::checksum_mismatch, "streaming state is truncated");
  uint32_t magic;
  std::memcpy(&magic, state.data(), 4);
  if (magic != kStateMagic) throw Exception(errc::checksum_mismatch, "not a streaming-prefill state");
  int64_t layer;
  std::memcpy(&layer, state.data() + 4, 8);
  std::memcpy(&next_pos_, state.data() + 12, 8);
  if (layer != settings_.layer) {
    throw Exception(errc::model_mismatch, "streaming state was made at layer " + std::to_string(layer) +
                                              ", not " + std::to_string(settings_.layer));
  }
  cache_ = model::KvCache::deserialize(model.hparams(), state.subspan(20));
}

std::vector<uint8_t> StreamingPrefill::save_state() const {
  // The cache image first, the 20-byte header moved in front of it: one allocation of the state's size
  // (plus room for the document state's trailer) instead of a copy per step.
  std::vector<uint8_t> image = cache_.serialize();
  std::vector<uint8_t> out;
  out.reserve(20 + image.size() + 64);
  out.resize(20);
  std::memcpy(out.data(), &kStateMagic, 4);
  std::memcpy(out.data() + 4, &settings_.layer, 8);
  std::memcpy(out.data() + 12, &next_pos_, 8);
  out.insert(out.end(), image.begin(), image.end());
  return out;
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
