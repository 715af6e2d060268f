// Streaming tokenisation with the ids of whole-text tokenisation.
//
// Construction: incoming bytes are validated as UTF-8 (an incomplete sequence at the end of a chunk waits
// for the next chunk; invalid bytes become U+FFFD one per byte, so the text S being tokenised is
// sanitize_utf8(document) whatever the chunking). S is held in `pending` until a safe cut is found: a position
// between two code points a|b for which VocabImpl::safe_cut holds. There the text before the cut is tokenised
// with VocabImpl::tokenize_segment, carrying across the cut the one piece of state tokenisation has
// (prev_special: whether the previous fragment was a special token, for the SPM space prefix), and dropped.
// Because tokenize(S) = [BOS] + segment(S) + [EOS] and, at a safe cut c, segment(S) = segment(S[0:c]) +
// segment(S[c:]) with prev_special carried (proof at VocabImpl::safe_cut), induction over the cuts gives
// concat(feed()..., finish()) == tokenize(S).
//
// Bounds: a safe cut only needs the two code points around it, so ids are emitted as soon as the next code
// point arrives after a safe position. Input is processed in slices of 64 KiB, and when the held-back text
// exceeds max_pending_bytes with no safe cut, it is cut anyway at the last position no special token spans
// (counted in forced_cuts()). So pending text stays below max_pending_bytes + 64 KiB + 3 bytes.
#include <algorithm>

#include "ilre/error.h"
#include "model/tokenizer/tokenizer_internal.h"
#include "model/tokenizer/unicode.h"

namespace ilre::model {

namespace {
constexpr size_t kSlice = 64 * 1024;
constexpr size_t kForcedCutWindow = 4096;  // how far back a forced cut looks for a special-token-safe spot
}  // namespace

struct StreamingTokenizer::Impl {
  std::shared_ptr<const Vocab> holder;
  const detail::VocabImpl* vocab = nullptr;
  TokenizeOptions options;
  StreamingOptions stream_options;

  std::string incomplete;  // start of a UTF-8 sequence whose remaining bytes have not arrived (<= 3 bytes)
  std::string pending;     // sanitized text not yet tokenised
  size_t scan_pos = 0;     // byte offset in pending of the next code point to test as the right side of a cut
  uint32_t prev_cpt = 0;   // the code point before scan_pos (when scan_pos > 0)
  size_t best_cut = 0;     // last safe cut found in pending (0 = none)
  bool started = false;    // BOS handled
  bool prev_special = true;
  bool finished = false;
  uint64_t bytes_in = 0;
  uint64_t replaced = 0;
  uint64_t forced = 0;

  void append_sanitized(std::string_view bytes) {
    std::string buf;
    std::string_view in = bytes;
    if (!incomplete.empty()) {
      buf = incomplete;
      buf.append(bytes);
      incomplete.clear();
      in = buf;
    }
    const auto* p = reinterpret_cast<const uint8_t*>(in.data());
    size_t i = 0;
    while (i < in.size()) {
      const int len = unicode::strict_sequence_length(p + i, in.size() - i);
      if (len > 0) {
        pending.append(in.data() + i, static_cast<size_t>(len));
        i += static_cast<size_t>(len);
      } else if (len == 0) {
        unicode::append_utf8(pending, unicode::kReplacementChar);
        ++replaced;
        ++i;
      } else {
        incomplete.assign(in.data() + i, in.size() - i);
        break;
      }
    }
  }

  void emit(size_t cut, std::vector<TokenId>& out) {
    if (!started) {
      if (options.add_special && vocab->add_bos()) out.push_back(vocab->bos());
      started = true;
    }
    vocab->tokenize_segment(std::string_view(pending).substr(0, cut), options.parse_special, prev_special, out);
    pending.erase(0, cut);
    scan_pos -= cut;
    best_cut = 0;
  }

  void scan() {
    while (scan_pos < pending.size()) {
      size_t next = scan_pos;
      const uint32_t b = unicode::decode_lenient(pending, next);
      if (scan_pos > 0 && vocab->safe_cut(prev_cpt, b, options.parse_special)) best_cut = scan_pos;
      prev_cpt = b;
      scan_pos = next;
    }
  }

  void forced_cut(std::vector<TokenId>& out) {
    // Last code-point boundary near the end that no special text spans; else simply the last boundary.
    std::vector<uint32_t> cpts;
    std::vector<uint32_t> offs;
    const size_t from = pending.size() > kForcedCutWindow ? pending.size() - kForcedCutWindow : 0;
    size_t start = from;
    while (start > 0 && (static_cast<uint8_t>(pending[start]) & 0xC0) == 0x80) --start;
    unicode::decode_valid(std::string_view(pending).substr(start), cpts, &offs);
    size_t cut = 0;
    for (size_t k = cpts.size(); k-- > 1;) {
      const size_t at = start + offs[k];
      if (cut == 0) cut = at;
      if (vocab->special_safe_cut(cpts[k - 1], cpts[k], options.parse_special)) {
        cut = at;
        break;
      }
    }
    if (cut == 0) return;  // a single code point: nothing to cut
    ++forced;
    emit(cut, out);
  }

  void process(std::vector<TokenId>& out) {
    scan();
    if (best_cut > 0) emit(best_cut, out);
    if (pending.size() > stream_options.max_pending_bytes) forced_cut(out);
  }
};

StreamingTokenizer::StreamingTokenizer(std::shared_ptr<const Vocab> vocab, TokenizeOptions options)
    : StreamingTokenizer(std::move(vocab), options, StreamingOptions{}) {}

StreamingTokenizer::StreamingTokenizer(std::shared_ptr<const Vocab> vocab, TokenizeOptions options,
                                       StreamingOptions stream_options)
    : impl_(std::make_unique<Impl>()) {
  impl_->vocab = dynamic_cast<const detail::VocabImpl*>(vocab.get());
  if (impl_->vocab == nullptr) {
    throw Exception(errc::invalid_argument, "StreamingTokenizer needs a vocabulary made by Vocab::from_gguf");
  }
  impl_->holder = std::move(vocab);
  impl_->options = options;
  impl_->stream_options = stream_options;
  impl_->stream_options.max_pending_bytes = std::max<size_t>(stream_options.max_pending_bytes, 16);
}

StreamingTokenizer::~StreamingTokenizer() = default;
StreamingTokenizer::StreamingTokenizer(StreamingTokenizer&&) noexcept = default;
StreamingTokenizer& StreamingTokenizer::operator=(StreamingTokenizer&&) noexcept = default;

std::vector<TokenId> StreamingTokenizer::feed(std::string_view bytes) {
  if (impl_->finished) throw Exception(errc::invalid_argument, "StreamingTokenizer::feed after finish");
  impl_->bytes_in += bytes.size();
  std::vector<TokenId> out;
  for (size_t i = 0; i < bytes.size(); i += kSlice) {
    impl_->append_sanitized(bytes.substr(i, kSlice));
    impl_->process(out);
  }
  return out;
}

std::vector<TokenId> StreamingTokenizer::finish() {
  if (impl_->finished) throw Exception(errc::invalid_argument, "StreamingTokenizer::finish called twice");
  Impl& s = *impl_;
  // A sequence still incomplete at the end of the document is invalid, one U+FFFD per byte.
  for (size_t k = 0; k < s.incomplete.size(); ++k) {
    unicode::append_utf8(s.pending, unicode::kReplacementChar);
    ++s.replaced;
  }
  s.incomplete.clear();
  std::vector<TokenId> out;
  if (!s.started) {
    if (s.options.add_special && s.vocab->add_bos()) out.push_back(s.vocab->bos());
    s.started = true;
  }
  s.vocab->tokenize_segment(s.pending, s.options.parse_special, s.prev_special, out);
  s.pending.clear();
  s.scan_pos = 0;
  if (s.options.add_special && s.vocab->add_eos()) out.push_back(s.vocab->eos());
  s.finished = true;
  return out;
}

StreamingTokenizer::Checkpoint StreamingTokenizer::checkpoint() const {
  const Impl& s = *impl_;
  if (s.finished) throw Exception(errc::invalid_argument, "StreamingTokenizer::checkpoint after finish");
  return Checkpoint{s.incomplete, s.pending, s.started, s.prev_special, s.bytes_in, s.replaced, s.forced};
}

StreamingTokenizer StreamingTokenizer::resume(std::shared_ptr<const Vocab> vocab, TokenizeOptions options,
                                              const Checkpoint& at, StreamingOptions stream_options) {
  StreamingTokenizer t(std::move(vocab), options, stream_options);
  Impl& s = *t.impl_;
  s.incomplete = at.incomplete;
  s.pending = at.pending;
  s.started = at.started;
  s.prev_special = at.prev_special;
  s.bytes_in = at.bytes_in;
  s.replaced = at.replaced;
  s.forced = at.forced;
  // scan_pos = 0: the next feed re-tests the held-back text for safe cuts, which only depend on the text.
  return t;
}

namespace {

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t take_u64(std::span<const uint8_t> in, size_t& at) {
  if (in.size() - at < 8) throw Exception(errc::checksum_mismatch, "tokenizer checkpoint is truncated");
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(in[at + static_cast<size_t>(i)]) << (8 * i);
  at += 8;
  return v;
}

void put_text(std::vector<uint8_t>& out, const std::string& s) {
  put_u64(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

std::string take_text(std::span<const uint8_t> in, size_t& at) {
  const uint64_t n = take_u64(in, at);
  if (n > in.size() - at) throw Exception(errc::checksum_mismatch, "tokenizer checkpoint is truncated");
  std::string s(reinterpret_cast<const char*>(in.data() + at), static_cast<size_t>(n));
  at += static_cast<size_t>(n);
  return s;
}

constexpr uint64_t kCheckpointMagic = 0x3154504b43544b49ull;  // "IKTCKPT1"

}  // namespace

std::vector<uint8_t> StreamingTokenizer::Checkpoint::to_bytes() const {
  std::vector<uint8_t> out;
  put_u64(out, kCheckpointMagic);
  put_u64(out, (started ? 1u : 0u) | (prev_special ? 2u : 0u));
  put_u64(out, bytes_in);
  put_u64(out, replaced);
  put_u64(out, forced);
  put_text(out, incomplete);
  put_text(out, pending);
  return out;
}

StreamingTokenizer::Checkpoint StreamingTokenizer::Checkpoint::from_bytes(std::span<const uint8_t> bytes) {
  size_t at = 0;
  if (take_u64(bytes, at) != kCheckpointMagic) throw Exception(errc::checksum_mismatch, "not a tokenizer checkpoint");
  Checkpoint c;
  const uint64_t flags = take_u64(bytes, at);
  if (flags > 3) throw Exception(errc::checksum_mismatch, "tokenizer checkpoint has unknown flags");
  c.started = (flags & 1u) != 0;
  c.prev_special = (flags & 2u) != 0;
  c.bytes_in = take_u64(bytes, at);
  c.replaced = take_u64(bytes, at);
  c.forced = take_u64(bytes, at);
  c.incomplete = take_text(bytes, at);
  c.pending = take_text(bytes, at);
  if (c.incomplete.size() > 3 || at != bytes.size()) throw Exception(errc::checksum_mismatch, "malformed tokenizer checkpoint");
  return c;
}

uint64_t StreamingTokenizer::bytes_in() const { return impl_->bytes_in; }
uint64_t StreamingTokenizer::replaced_bytes() const { return impl_->replaced; }
uint64_t StreamingTokenizer::forced_cuts() const { return impl_->forced; }
size_t StreamingTokenizer::pending_bytes() const { return impl_->pending.size() + impl_->incomplete.size(); }

}  // namespace ilre::model
