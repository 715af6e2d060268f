#include "storage/segment_codec.h"

#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "model/gguf/ggml_type.h"
#include "model/kernels/quant.h"
#include "storage/checksum.h"

namespace ilre::storage {

static_assert(std::endian::native == std::endian::little,
              "the store format is little-endian and written with memcpy; add byte swaps for big-endian hosts");

namespace {

template <class T>
void put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Tokens per block in the channel-major transposes: 64 tokens x width 16-bit values stay in L1/L2.
constexpr int64_t kTokenBlock = 64;
// Values per block in the conversions.
constexpr size_t kValueBlock = 4096;

model::GgmlType ggml_of(KeyDtype d) { return d == KeyDtype::f16 ? model::GgmlType::F16 : model::GgmlType::BF16; }

}  // namespace

std::string_view key_dtype_name(KeyDtype dtype) { return dtype == KeyDtype::f16 ? "f16" : "bf16"; }

std::optional<KeyDtype> key_dtype_from_name(std::string_view name) {
  if (name == "f16") return KeyDtype::f16;
  if (name == "bf16") return KeyDtype::bf16;
  return std::nullopt;
}

std::string_view shuffle_name(Shuffle s) {
  switch (s) {
    case Shuffle::none: return "none";
    case Shuffle::bytes: return "bytes";
    case Shuffle::channel_bytes: return "channel_bytes";
  }
  return "?";
}

std::optional<Shuffle> shuffle_from_name(std::string_view name) {
  if (name == "none") return Shuffle::none;
  if (name == "bytes") return Shuffle::bytes;
  if (name == "channel_bytes") return Shuffle::channel_bytes;
  return std::nullopt;
}

std::string_view shuffle_mode_name(ShuffleMode m) {
  switch (m) {
    case ShuffleMode::automatic: return "auto";
    case ShuffleMode::none: return "none";
    case ShuffleMode::bytes: return "bytes";
    case ShuffleMode::channel_bytes: return "channel_bytes";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------------------
// Header

void encode_segment_header(const SegmentHeader& h, uint8_t out[kSegmentHeaderBytes]) {
  std::memset(out, 0, kSegmentHeaderBytes);
  std::memcpy(out, kSegmentMagic, 8);
  put<uint32_t>(out + 8, h.version);
  put<uint32_t>(out + 12, static_cast<uint32_t>(kSegmentHeaderBytes));
  put<int64_t>(out + 16, h.first_pos);
  put<int64_t>(out + 24, h.n_tokens);
  put<uint32_t>(out + 32, h.key_width);
  out[36] = static_cast<uint8_t>(h.dtype);
  out[37] = static_cast<uint8_t>(h.shuffle);
  put<uint16_t>(out + 38, h.flags);
  put<uint64_t>(out + 40, h.token_frame_bytes);
  put<uint64_t>(out + 48, h.key_frame_bytes);
  put<uint32_t>(out + 56, 0);  // reserved
  put<uint32_t>(out + 60, crc32c(out, 60));
}

Result<SegmentHeader> decode_segment_header(std::span<const uint8_t> b, const std::string& file) {
  if (b.size() < kSegmentHeaderBytes) {
    return make_error(errc::checksum_mismatch, "segment " + file + " is truncated: " + std::to_string(b.size()) +
                                                   " bytes, shorter than its header");
  }
  const uint8_t* p = b.data();
  if (std::memcmp(p, kSegmentMagic, 8) != 0) {
    return make_error(errc::checksum_mismatch, "segment " + file + " does not start with the ILREKSEG magic");
  }
  if (get<uint32_t>(p + 60) != crc32c(p, 60)) {
    return make_error(errc::checksum_mismatch, "segment " + file + ": header checksum mismatch");
  }
  SegmentHeader h;
  h.version = get<uint32_t>(p + 8);
  if (h.version > kSegmentFormatVersion) {
    return make_error(errc::unsupported, "segment " + file + " has format version " + std::to_string(h.version) +
                                             "; this build reads up to " + std::to_string(kSegmentFormatVersion));
  }
  if (get<uint32_t>(p + 12) != kSegmentHeaderBytes) {
    return make_error(errc::unsupported, "segment " + file + ": unexpected header size");
  }
  h.first_pos = get<int64_t>(p + 16);
  h.n_tokens = get<int64_t>(p + 24);
  h.key_width = get<uint32_t>(p + 32);
  const uint8_t dt = p[36];
  const uint8_t sh = p[37];
  h.flags = get<uint16_t>(p + 38);
  h.token_frame_bytes = get<uint64_t>(p + 40);
  h.key_frame_bytes = get<uint64_t>(p + 48);
  if (dt != 1 && dt != 2) return make_error(errc::unsupported, "segment " + file + ": unknown key dtype");
  if (sh > 2) return make_error(errc::unsupported, "segment " + file + ": unknown shuffle layout");
  if (h.first_pos < 0 || h.n_tokens <= 0 || h.key_width == 0 || h.token_frame_bytes > (1ull << 40) ||
      h.key_frame_bytes > (1ull << 40)) {
    return make_error(errc::checksum_mismatch, "segment " + file + ": header fields out of range");
  }
  h.dtype = static_cast<KeyDtype>(dt);
  h.shuffle = static_cast<Shuffle>(sh);
  return h;
}

// ---------------------------------------------------------------------------------------------------------
// Conversions and shuffles

void keys_to_16(KeyDtype dtype, const float* src, uint16_t* dst, size_t n) {
  model::quantize_row_reference(ggml_of(dtype), src, dst, static_cast<int64_t>(n));
}

void keys_from_16(KeyDtype dtype, const uint16_t* src, float* dst, size_t n) {
  model::dequantize_row(ggml_of(dtype), src, dst, static_cast<int64_t>(n));
}

void shuffle_keys(Shuffle s, const uint16_t* v, int64_t n_tokens, int32_t width, uint8_t* dst) {
  const size_t n = static_cast<size_t>(n_tokens) * static_cast<size_t>(width);
  switch (s) {
    case Shuffle::none:
      std::memcpy(dst, v, 2 * n);
      return;
    case Shuffle::bytes: {
      uint8_t* lo = dst;
      uint8_t* hi = dst + n;
      for (size_t i = 0; i < n; ++i) {
        lo[i] = static_cast<uint8_t>(v[i]);
        hi[i] = static_cast<uint8_t>(v[i] >> 8);
      }
      return;
    }
    case Shuffle::channel_bytes: {
      uint8_t* lo = dst;
      uint8_t* hi = dst + n;
      const size_t nt = static_cast<size_t>(n_tokens);
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
        const int64_t t1 = std::min(n_tokens, t0 + kTokenBlock);
        for (int32_t c = 0; c < width; ++c) {
          uint8_t* lc = lo + static_cast<size_t>(c) * nt;
          uint8_t* hc = hi + static_cast<size_t>(c) * nt;
          for (int64_t t = t0; t < t1; ++t) {
            const uint16_t x = v[static_cast<size_t>(t) * static_cast<size_t>(width) + static_cast<size_t>(c)];
            lc[t] = static_cast<uint8_t>(x);
            hc[t] = static_cast<uint8_t>(x >> 8);
          }
        }
      }
      return;
    }
  }
}

void unshuffle_keys(Shuffle s, const uint8_t* src, int64_t n_tokens, int32_t width, uint16_t* v) {
  const size_t n = static_cast<size_t>(n_tokens) * static_cast<size_t>(width);
  switch (s) {
    case Shuffle::none:
      std::memcpy(v, src, 2 * n);
      return;
    case Shuffle::bytes: {
      const uint8_t* lo = src;
      const uint8_t* hi = src + n;
      for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint16_t>(lo[i] | (hi[i] << 8));
      return;
    }
    case Shuffle::channel_bytes: {
      const uint8_t* lo = src;
      const uint8_t* hi = src + n;
      const size_t nt = static_cast<size_t>(n_tokens);
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
        const int64_t t1 = std::min(n_tokens, t0 + kTokenBlock);
        for (int32_t c = 0; c < width; ++c) {
          const uint8_t* lc = lo + static_cast<size_t>(c) * nt;
          const uint8_t* hc = hi + static_cast<size_t>(c) * nt;
          for (int64_t t = t0; t < t1; ++t) {
            v[static_cast<size_t>(t) * static_cast<size_t>(width) + static_cast<size_t>(c)] =
                static_cast<uint16_t>(lc[t] | (hc[t] << 8));
          }
        }
      }
      return;
    }
  }
}

void unshuffle_keys_f32(Shuffle s, KeyDtype dtype, const uint8_t* src, int64_t n_tokens, int32_t width,
                        float* out) {
  const size_t n = static_cast<size_t>(n_tokens) * static_cast<size_t>(width);
  const size_t w = static_cast<size_t>(width);
  switch (s) {
    case Shuffle::none: {
      uint16_t tmp[kValueBlock];
      for (size_t i = 0; i < n; i += kValueBlock) {
        const size_t m = std::min(kValueBlock, n - i);
        std::memcpy(tmp, src + 2 * i, 2 * m);  // src may be unaligned
        keys_from_16(dtype, tmp, out + i, m);
      }
      return;
    }
    case Shuffle::bytes: {
      uint16_t tmp[kValueBlock];
      const uint8_t* lo = src;
      const uint8_t* hi = src + n;
      for (size_t i = 0; i < n; i += kValueBlock) {
        const size_t m = std::min(kValueBlock, n - i);
        for (size_t j = 0; j < m; ++j) tmp[j] = static_cast<uint16_t>(lo[i + j] | (hi[i + j] << 8));
        keys_from_16(dtype, tmp, out + i, m);
      }
      return;
    }
    case Shuffle::channel_bytes: {
      // Transpose kTokenBlock tokens into a small row-major block, then convert it.
      std::vector<uint16_t> tmp(static_cast<size_t>(kTokenBlock) * w);
      const uint8_t* lo = src;
      const uint8_t* hi = src + n;
      const size_t nt = static_cast<size_t>(n_tokens);
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
        const int64_t t1 = std::min(n_tokens, t0 + kTokenBlock);
        for (size_t c = 0; c < w; ++c) {
          const uint8_t* lc = lo + c * nt;
          const uint8_t* hc = hi + c * nt;
          for (int64_t t = t0; t < t1; ++t) {
            tmp[static_cast<size_t>(t - t0) * w + c] = static_cast<uint16_t>(lc[t] | (hc[t] << 8));
          }
        }
        keys_from_16(dtype, tmp.data(), out + static_cast<size_t>(t0) * w, static_cast<size_t>(t1 - t0) * w);
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// zstd

ZstdCompressor::ZstdCompressor(int level) : ctx_(ZSTD_createCCtx()), level_(level) {
  auto* cctx = static_cast<ZSTD_CCtx*>(ctx_);
  if (cctx) {
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
  }
}

ZstdCompressor::~ZstdCompressor() { ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(ctx_)); }

Result<void> ZstdCompressor::compress(std::span<const uint8_t> src, std::vector<uint8_t>& out) {
  auto* cctx = static_cast<ZSTD_CCtx*>(ctx_);
  if (!cctx) return make_error(errc::internal, "zstd: cannot create a compression context");
  out.resize(ZSTD_compressBound(src.size()));
  const size_t r = ZSTD_compress2(cctx, out.data(), out.size(), src.data(), src.size());
  if (ZSTD_isError(r)) return make_error(errc::internal, std::string("zstd compress: ") + ZSTD_getErrorName(r));
  out.resize(r);
  return {};
}

bool zstd_frame_may_hold(std::span<const uint8_t> frame, uint64_t n) {
  constexpr uint64_t kMaxExpansion = ZSTD_BLOCKSIZE_MAX / 4;
  if (n / kMaxExpansion > frame.size()) return false;
  return ZSTD_getFrameContentSize(frame.data(), frame.size()) == n;
}

Result<void> zstd_decompress(std::span<const uint8_t> frame, std::span<uint8_t> dst, const std::string& file,
                             std::string_view what) {
  const unsigned long long content = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content != dst.size()) {
    return make_error(errc::checksum_mismatch, "segment " + file + ": " + std::string(what) +
                                                   " frame is corrupt or has the wrong size");
  }
  thread_local struct Dctx {
    ZSTD_DCtx* p = ZSTD_createDCtx();
    ~Dctx() { ZSTD_freeDCtx(p); }
  } dctx;
  if (!dctx.p) return make_error(errc::internal, "zstd: cannot create a decompression context");
  const size_t r = ZSTD_decompressDCtx(dctx.p, dst.data(), dst.size(), frame.data(), frame.size());
  if (ZSTD_isError(r) || r != dst.size()) {
    return make_error(errc::checksum_mismatch, "segment " + file + ": " + std::string(what) + " frame: " +
                                                   (ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output"));
  }
  return {};
}

// ---------------------------------------------------------------------------------------------------------
// Encoder

Result<void> encode_segment(ZstdCompressor& zc, ShuffleMode mode, KeyDtype dtype, int64_t first_pos,
                            std::span<const uint16_t> keys, std::span<const int32_t> tokens, int32_t width,
                            EncodedSegment& out, std::vector<uint8_t>& scratch) {
  const int64_t n_tokens = static_cast<int64_t>(tokens.size());
  if (keys.size() != tokens.size() * static_cast<size_t>(width)) {
    return make_error(errc::internal, "encode_segment: keys and tokens disagree");
  }
  out.header = SegmentHeader{};
  out.header.first_pos = first_pos;
  out.header.n_tokens = n_tokens;
  out.header.key_width = static_cast<uint32_t>(width);
  out.header.dtype = dtype;
  std::fill(std::begin(out.candidate_key_bytes), std::end(out.candidate_key_bytes), 0);

  if (auto r = zc.compress({reinterpret_cast<const uint8_t*>(tokens.data()), tokens.size_bytes()}, out.token_frame);
      !r) {
    return r;
  }

  std::vector<Shuffle> candidates;
  switch (mode) {
    case ShuffleMode::automatic: candidates = {Shuffle::none, Shuffle::bytes, Shuffle::channel_bytes}; break;
    case ShuffleMode::none: candidates = {Shuffle::none}; break;
    case ShuffleMode::bytes: candidates = {Shuffle::bytes}; break;
    case ShuffleMode::channel_bytes: candidates = {Shuffle::channel_bytes}; break;
  }
  scratch.resize(keys.size_bytes());
  std::vector<uint8_t>& frame = out.spare_frame;
  bool have = false;
  for (Shuffle s : candidates) {
    std::span<const uint8_t> src;
    if (s == Shuffle::none) {
      src = {reinterpret_cast<const uint8_t*>(keys.data()), keys.size_bytes()};
    } else {
      shuffle_keys(s, keys.data(), n_tokens, width, scratch.data());
      src = {scratch.data(), scratch.size()};
    }
    if (auto r = zc.compress(src, frame); !r) return r;
    out.candidate_key_bytes[static_cast<int>(s)] = frame.size();
    if (!have || frame.size() < out.key_frame.size()) {  // strict: ties keep the earlier (simpler) layout
      out.key_frame.swap(frame);
      out.header.shuffle = s;
      have = true;
    }
  }
  out.header.token_frame_bytes = out.token_frame.size();
  out.header.key_frame_bytes = out.key_frame.size();
  encode_segment_header(out.header, out.header_bytes);
  uint32_t crc = crc32c(out.header_bytes, kSegmentHeaderBytes);
  crc = crc32c(out.token_frame, crc);
  out.prefix_checksum = crc;
  out.checksum = crc32c(out.key_frame, crc);
  return {};
}

}  // namespace ilre::storage
