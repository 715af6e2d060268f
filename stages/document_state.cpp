#include "stages/document_state.h"

#include <cstring>
#include <string_view>

namespace ilre::stages {
namespace {

constexpr std::string_view kMagic = "ILREDST1";

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void put_bytes(std::vector<uint8_t>& out, std::span<const uint8_t> bytes) {
  put_u64(out, bytes.size());
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// Bounds-checked reads of a blob; every failure is one clear error.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool u64(uint64_t& v) {
    if (in_.size() - at_ < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(in_[at_ + static_cast<size_t>(i)]) << (8 * i);
    at_ += 8;
    return true;
  }
  bool bytes(std::span<const uint8_t>& out) {
    uint64_t n = 0;
    if (!u64(n) || n > in_.size() - at_) return false;
    out = in_.subspan(at_, static_cast<size_t>(n));
    at_ += static_cast<size_t>(n);
    return true;
  }
  bool u8(uint8_t& v) {
    if (at_ >= in_.size()) return false;
    v = in_[at_++];
    return true;
  }
  bool done() const { return at_ == in_.size(); }

 private:
  std::span<const uint8_t> in_;
  size_t at_ = 0;
};

}  // namespace

std::vector<uint8_t> pack_document_state(DocumentState state) {
  std::vector<uint8_t> out = std::move(state.prefill);
  const uint64_t prefill_size = out.size();
  if (state.tail) {
    put_bytes(out, state.tail->tokenizer.to_bytes());
    put_u64(out, state.tail->tokens.size());
    for (const model::TokenId id : state.tail->tokens) {
      const auto u = static_cast<uint32_t>(id);
      for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(u >> (8 * i)));
    }
  }
  put_u64(out, prefill_size);
  out.push_back(state.tail ? 1 : 0);
  out.insert(out.end(), kMagic.begin(), kMagic.end());
  return out;
}

Result<DocumentState> unpack_document_state(std::span<const uint8_t> blob) {
  DocumentState state;
  constexpr size_t kTrailer = 8 + 1 + kMagic.size();
  if (blob.size() < kTrailer || std::memcmp(blob.data() + blob.size() - kMagic.size(), kMagic.data(), kMagic.size()) != 0) {
    state.prefill.assign(blob.begin(), blob.end());  // a raw prefill state: no tail
    return state;
  }
  const auto bad = [] { return make_error(errc::checksum_mismatch, "the store's document state is malformed"); };
  const std::span<const uint8_t> trailer = blob.subspan(blob.size() - kTrailer);
  Reader tr(trailer);
  uint64_t prefill_size = 0;
  uint8_t has_tail = 0;
  if (!tr.u64(prefill_size) || !tr.u8(has_tail) || has_tail > 1 || prefill_size > blob.size() - kTrailer) return bad();
  state.prefill.assign(blob.begin(), blob.begin() + static_cast<std::ptrdiff_t>(prefill_size));
  Reader r(blob.subspan(static_cast<size_t>(prefill_size), blob.size() - kTrailer - static_cast<size_t>(prefill_size)));
  if (has_tail) {
    std::span<const uint8_t> checkpoint;
    uint64_t n = 0;
    if (!r.bytes(checkpoint) || !r.u64(n)) return bad();
    StreamTail tail;
    auto parsed = catch_to_result([&] { return model::StreamingTokenizer::Checkpoint::from_bytes(checkpoint); });
    if (!parsed) return tl::unexpected(parsed.error());
    tail.tokenizer = std::move(*parsed);
    if (n > (1u << 24)) return bad();
    tail.tokens.reserve(static_cast<size_t>(n));
    for (uint64_t k = 0; k < n; ++k) {
      uint32_t u = 0;
      for (int i = 0; i < 4; ++i) {
        uint8_t b = 0;
        if (!r.u8(b)) return bad();
        u |= static_cast<uint32_t>(b) << (8 * i);
      }
      tail.tokens.push_back(static_cast<model::TokenId>(u));
    }
    state.tail = std::move(tail);
  }
  if (!r.done()) return bad();
  return state;
}

}  // namespace ilre::stages
