// Key/value cache of the layers a forward pass runs, with the eviction ILRe's streaming prefill needs.
//
// Storage is F16 by default, as llama.cpp's default cache: attention then rounds Q and the softmax
// probabilities to F16 too (llama.cpp multiplies in the cache's type), which is what makes our logits agree
// with llama.cpp's. F32 gives exact arithmetic at twice the memory. Entries are stored token-major (one row of n_kv_heads*head_dim floats per token) in position order, so a
// chunk appends with one copy and a sink+window eviction is one memmove per layer. Keys are stored after
// RoPE; positions are kept beside them so masks are computed from positions, never from slot indices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "model/hparams.h"

namespace ilre::model {

enum class KvType { f16, f32 };

// "f16" | "f32" (config decode.kv_type, CLI --kv-type); nullopt for anything else.
inline std::optional<KvType> kv_type_from_name(std::string_view name) {
  if (name == "f16") return KvType::f16;
  if (name == "f32") return KvType::f32;
  return std::nullopt;
}

class KvCache {
 public:
  // Caches layers [0, n_layers) of a model with these hyper-parameters.
  KvCache(const HParams& hp, int64_t n_layers, KvType type = KvType::f16);

  KvType type() const { return type_; }
  int64_t n_layers() const { return static_cast<int64_t>(layers_.size()); }
  int64_t k_width() const { return k_width_; }  // n_kv_heads * head_dim_k
  int64_t v_width() const { return v_width_; }
  // Entries currently held by a layer (all layers hold the same tokens between forward calls).
  int64_t size(int64_t layer) const { return static_cast<int64_t>(layers_[static_cast<size_t>(layer)].pos.size()); }

  // Appends n rows of F32 k [n, k_width] and v [n, v_width] (converted to the cache type).
  // Positions must not decrease: attention finds its key range by binary search.
  void append(int64_t layer, const float* k, const float* v, const int32_t* pos, int64_t n);

  // Raw rows in the cache type: uint16_t (F16 bits) or float, row-major [size, width].
  const void* keys(int64_t layer) const { return layers_[static_cast<size_t>(layer)].k.data(); }
  const void* values(int64_t layer) const { return layers_[static_cast<size_t>(layer)].v.data(); }
  std::span<const int32_t> positions(int64_t layer) const { return layers_[static_cast<size_t>(layer)].pos; }

  // F32 copies of the keys of entries [first, first + n) of a layer.
  void read_keys(int64_t layer, int64_t first, int64_t n, float* out) const;
  // Replaces the keys and positions of entries [first, first + n) (values stay): the streaming prefill's
  // `cache` positions move the sink next to the window this way. Positions must stay non-decreasing.
  void overwrite_keys(int64_t layer, int64_t first, int64_t n, const float* k, const int32_t* pos);

  // StreamingLLM eviction: keeps the first `sink` and the last `window` entries of every layer.
  void evict_middle(int64_t sink, int64_t window);
  // Drops every entry with position >= pos (rewinding a conversation).
  void truncate_from(int32_t pos);
  void clear();

  size_t bytes() const;  // memory held, for budgets and metrics

  // A self-describing byte image (ILRe persists the streaming state at the end of a document and resumes
  // from it to encode questions or append text). deserialize checks it against the model's dimensions and
  // throws Exception(model_mismatch) for other dimensions and (checksum_mismatch) for a damaged image.
  std::vector<uint8_t> serialize() const;
  static KvCache deserialize(const HParams& hp, std::span<const uint8_t> bytes);

 private:
  struct Layer {
    std::vector<uint8_t> k;  // [n, k_width] elements of the cache type
    std::vector<uint8_t> v;  // [n, v_width]
    std::vector<int32_t> pos;
  };
  size_t elem_bytes() const { return type_ == KvType::f16 ? 2 : 4; }
  void store(const float* src, int64_t n, std::vector<uint8_t>& dst) const;

  KvType type_;
  int64_t k_width_;
  int64_t v_width_;
  std::vector<Layer> layers_;
};

}  // namespace ilre::model
