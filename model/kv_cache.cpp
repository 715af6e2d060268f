#include "kv_cache.h"

#include <algorithm>

#include <cstring>

#include "ilre/error.h"
#include "quant.h"

namespace ilre::model {

KvCache::KvCache(const HParams& hp, int64_t n_layers, KvType type)
    : type_(type), k_width_(hp.n_embd_k()), v_width_(hp.n_embd_v()), layers_(static_cast<size_t>(n_layers)) {
  if (n_layers < 0 || n_layers > hp.n_layer) {
    throw Exception(errc::invalid_argument, "kv cache: " + std::to_string(n_layers) + " layers requested, model has " +
                                                std::to_string(hp.n_layer));
  }
}

void KvCache::append(int64_t layer, const float* k, const float* v, const int32_t* pos, int64_t n) {
  Layer& L = layers_.at(static_cast<size_t>(layer));
  if (n <= 0) return;
  if (!L.pos.empty() && pos[0] < L.pos.back()) {
    throw Exception(errc::internal, "kv cache: position " + std::to_string(pos[0]) + " appended after " +
                                        std::to_string(L.pos.back()));
  }
  for (int64_t i = 1; i < n; ++i) {
    if (pos[i] < pos[i - 1]) throw Exception(errc::internal, "kv cache: positions within a batch decrease");
  }
  store(k, n * k_width_, L.k);
  store(v, n * v_width_, L.v);
  L.pos.insert(L.pos.end(), pos, pos + n);
}

void KvCache::store(const float* src, int64_t n, std::vector<uint8_t>& dst) const {
  const size_t at = dst.size();
  dst.resize(at + static_cast<size_t>(n) * elem_bytes());
  if (type_ == KvType::f32) {
    std::memcpy(dst.data() + at, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  auto* out = reinterpret_cast<uint16_t*>(dst.data() + at);
  for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_fp16(src[i]);
}

void KvCache::evict_middle(int64_t sink, int64_t window) {
  for (Layer& L : layers_) {
    const auto n = static_cast<int64_t>(L.pos.size());
    if (n <= sink + window) continue;
    const int64_t drop = n - sink - window;
    const auto kb = static_cast<int64_t>(elem_bytes()) * k_width_;
    const auto vb = static_cast<int64_t>(elem_bytes()) * v_width_;
    L.k.erase(L.k.begin() + sink * kb, L.k.begin() + (sink + drop) * kb);
    L.v.erase(L.v.begin() + sink * vb, L.v.begin() + (sink + drop) * vb);
    L.pos.erase(L.pos.begin() + sink, L.pos.begin() + sink + drop);
  }
}

void KvCache::truncate_from(int32_t pos) {
  for (Layer& L : layers_) {
    const auto keep = static_cast<int64_t>(std::lower_bound(L.pos.begin(), L.pos.end(), pos) - L.pos.begin());
    L.k.resize(static_cast<size_t>(keep * k_width_) * elem_bytes());
    L.v.resize(static_cast<size_t>(keep * v_width_) * elem_bytes());
    L.pos.resize(static_cast<size_t>(keep));
  }
}

void KvCache::clear() {
  for (Layer& L : layers_) {
    L.k.clear();
    L.v.clear();
    L.pos.clear();
  }
}

size_t KvCache::bytes() const {
  size_t total = 0;
  for (const Layer& L : layers_) {
    total += L.k.capacity() + L.v.capacity() + L.pos.capacity() * sizeof(int32_t);
  }
  return total;
}

}  // namespace ilre::model
