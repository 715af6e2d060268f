#include "model/kv_cache.h"

#include <algorithm>

#include <cstring>

#include "ilre/error.h"
#include "model/kernels/quant.h"

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
  fp32_to_fp16_row(src, out, n);
}

void KvCache::read_keys(int64_t layer, int64_t first, int64_t n, float* out) const {
  const Layer& L = layers_.at(static_cast<size_t>(layer));
  if (first < 0 || n < 0 || first + n > static_cast<int64_t>(L.pos.size())) {
    throw Exception(errc::internal, "kv cache: key rows out of range");
  }
  const size_t at = static_cast<size_t>(first * k_width_) * elem_bytes();
  if (type_ == KvType::f32) {
    std::memcpy(out, L.k.data() + at, static_cast<size_t>(n * k_width_) * sizeof(float));
  } else {
    fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(L.k.data() + at), out, n * k_width_);
  }
}

void KvCache::overwrite_keys(int64_t layer, int64_t first, int64_t n, const float* k, const int32_t* pos) {
  Layer& L = layers_.at(static_cast<size_t>(layer));
  const auto size = static_cast<int64_t>(L.pos.size());
  if (first < 0 || n < 0 || first + n > size) throw Exception(errc::internal, "kv cache: key rows out of range");
  for (int64_t i = 0; i < n; ++i) {
    const int32_t before = first + i > 0 ? (i > 0 ? pos[i - 1] : L.pos[static_cast<size_t>(first - 1)]) : pos[i];
    const bool after_ok = first + i + 1 >= size || i + 1 < n || pos[i] <= L.pos[static_cast<size_t>(first + i + 1)];
    if (pos[i] < before || !after_ok) throw Exception(errc::internal, "kv cache: overwritten positions must not decrease");
  }
  const size_t at = static_cast<size_t>(first * k_width_) * elem_bytes();
  if (type_ == KvType::f32) {
    std::memcpy(L.k.data() + at, k, static_cast<size_t>(n * k_width_) * sizeof(float));
  } else {
    fp32_to_fp16_row(k, reinterpret_cast<uint16_t*>(L.k.data() + at), n * k_width_);
  }
  std::copy(pos, pos + n, L.pos.begin() + first);
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

namespace {

constexpr uint32_t kImageMagic = 0x4B564331;  // "KVC1"

template <class T>
void put(std::vector<uint8_t>& out, const T& v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

template <class T>
T take(std::span<const uint8_t> bytes, size_t& at) {
  if (at + sizeof(T) > bytes.size()) throw Exception(errc::checksum_mismatch, "kv cache image is truncated");
  T v;
  std::memcpy(&v, bytes.data() + at, sizeof(T));
  at += sizeof(T);
  return v;
}

// FNV-1a: detects a damaged image; the store checksums the file as well.
uint64_t fnv1a(std::span<const uint8_t> bytes) {
  uint64_t h = 1469598103934665603ull;
  for (uint8_t b : bytes) h = (h ^ b) * 1099511628211ull;
  return h;
}

}  // namespace

std::vector<uint8_t> KvCache::serialize() const {
  std::vector<uint8_t> out;
  put(out, kImageMagic);
  put(out, static_cast<uint32_t>(type_));
  put(out, k_width_);
  put(out, v_width_);
  put(out, static_cast<int64_t>(layers_.size()));
  for (const Layer& L : layers_) {
    put(out, static_cast<int64_t>(L.pos.size()));
    out.insert(out.end(), L.k.begin(), L.k.end());
    out.insert(out.end(), L.v.begin(), L.v.end());
    const auto* p = reinterpret_cast<const uint8_t*>(L.pos.data());
    out.insert(out.end(), p, p + L.pos.size() * sizeof(int32_t));
  }
  put(out, fnv1a(out));
  return out;
}

KvCache KvCache::deserialize(const HParams& hp, std::span<const uint8_t> bytes) {
  if (bytes.size() < sizeof(uint64_t)) throw Exception(errc::checksum_mismatch, "kv cache image is truncated");
  const auto body = bytes.first(bytes.size() - sizeof(uint64_t));
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + body.size(), sizeof(stored));
  if (stored != fnv1a(body)) throw Exception(errc::checksum_mismatch, "kv cache image checksum does not match");
  size_t at = 0;
  if (take<uint32_t>(body, at) != kImageMagic) throw Exception(errc::checksum_mismatch, "not a kv cache image");
  const auto type = static_cast<KvType>(take<uint32_t>(body, at));
  if (type != KvType::f16 && type != KvType::f32) throw Exception(errc::checksum_mismatch, "kv cache image has an unknown type");
  const auto k_width = take<int64_t>(body, at);
  const auto v_width = take<int64_t>(body, at);
  const auto n_layers = take<int64_t>(body, at);
  if (k_width != hp.n_embd_k() || v_width != hp.n_embd_v() || n_layers < 0 || n_layers > hp.n_layer) {
    throw Exception(errc::model_mismatch, "kv cache image was made for a model with other dimensions");
  }
  KvCache cache(hp, n_layers, type);
  for (Layer& L : cache.layers_) {
    const auto n = take<int64_t>(body, at);
    const size_t kb = static_cast<size_t>(n * k_width) * cache.elem_bytes();
    const size_t vb = static_cast<size_t>(n * v_width) * cache.elem_bytes();
    if (n < 0 || at + kb + vb + static_cast<size_t>(n) * sizeof(int32_t) > body.size()) {
      throw Exception(errc::checksum_mismatch, "kv cache image is truncated");
    }
    L.k.assign(body.begin() + static_cast<std::ptrdiff_t>(at), body.begin() + static_cast<std::ptrdiff_t>(at + kb));
    at += kb;
    L.v.assign(body.begin() + static_cast<std::ptrdiff_t>(at), body.begin() + static_cast<std::ptrdiff_t>(at + vb));
    at += vb;
    L.pos.resize(static_cast<size_t>(n));
    std::memcpy(L.pos.data(), body.data() + at, static_cast<size_t>(n) * sizeof(int32_t));
    at += static_cast<size_t>(n) * sizeof(int32_t);
  }
  if (at != body.size()) throw Exception(errc::checksum_mismatch, "kv cache image has trailing bytes");
  return cache;
}

size_t KvCache::bytes() const {
  size_t total = 0;
  for (const Layer& L : layers_) {
    total += L.k.capacity() + L.v.capacity() + L.pos.capacity() * sizeof(int32_t);
  }
  return total;
}

}  // namespace ilre::model
