// Unicode helpers for the tokenizers: UTF-8 decoding (llama.cpp's lenient decoder and a strict validator),
// code-point categories as llama.cpp's pre-tokenizers see them, and GPT-2's byte <-> code-point mapping.
//
// Categories come from utf8proc (Debian's libutf8proc, Unicode 15.0) with the code points that Unicode 15.1
// assigned patched in, because llama.cpp's generated table (src/unicode-data.cpp) is Unicode 15.1: with the
// patch the two agree on every code point 0..0x10FFFF (checked once against llama.cpp's table; the unit test
// pins a sample). utf8proc was chosen over a table of our own because it is a maintained Debian package, and
// over PCRE2 because the pre-tokenizers are hand-written scanners that only need per-code-point categories.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ilre::model::unicode {

// Category bits with llama.cpp's meaning (unicode_cpt_flags): exactly one category bit per code point
// (kUndefined for unassigned code points), plus kWhitespace for the Unicode White_Space property.
enum CptFlag : uint16_t {
  kUndefined = 0x0001,
  kNumber = 0x0002,       // \p{N}
  kLetter = 0x0004,       // \p{L}
  kSeparator = 0x0008,    // \p{Z}
  kAccentMark = 0x0010,   // \p{M}
  kPunctuation = 0x0020,  // \p{P}
  kSymbol = 0x0040,       // \p{S}
  kControl = 0x0080,      // \p{C} (Cc, Cf, Cs, Co)
  kCategoryMask = 0x00FF,
  kWhitespace = 0x0100,   // \s
};

// Flags of a code point; code points above 0x10FFFF are kUndefined. Never 0.
uint16_t cpt_flags(uint32_t cpt);
inline bool is_letter(uint32_t cpt) { return (cpt_flags(cpt) & kLetter) != 0; }
inline bool is_number(uint32_t cpt) { return (cpt_flags(cpt) & kNumber) != 0; }
inline bool is_whitespace(uint32_t cpt) { return (cpt_flags(cpt) & kWhitespace) != 0; }

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Byte length of a UTF-8 sequence judged from its first byte alone (llama.cpp's unicode_len_utf8):
// 1 for ASCII and for stray continuation bytes, 2/3/4 for lead bytes (0xF8..0xFF count as 4).
size_t utf8_len_from_lead(uint8_t lead);

// llama.cpp's lenient decoder: accepts overlong forms and surrogates; a byte that does not start a complete
// sequence decodes to U+FFFD and advances by one. (llama.cpp throws later for sequences above U+10FFFF; here
// those bytes are treated as invalid too, one U+FFFD per byte.)
uint32_t decode_lenient(std::string_view s, size_t& offset);
std::vector<uint32_t> decode_lenient_all(std::string_view s);

// Appends the UTF-8 encoding of cpt (cpt <= 0x10FFFF; surrogates are encoded as-is like llama.cpp does).
void append_utf8(std::string& out, uint32_t cpt);

// Strict RFC 3629 validation of the sequence starting at p[0] with `avail` bytes available:
// returns its length (1..4) if well-formed, 0 if p[0] cannot start a well-formed sequence (then p[0] alone is
// invalid), or -1 if the bytes so far are a valid but incomplete prefix and more input is needed.
int strict_sequence_length(const uint8_t* p, size_t avail);

// Replaces every byte that is not part of a well-formed UTF-8 sequence with U+FFFD (one per byte, the same
// granularity as llama.cpp's decoder). A truncated sequence at the end of `s` is invalid too.
std::string sanitize_utf8(std::string_view s, uint64_t* replaced_bytes = nullptr);

// Decodes well-formed UTF-8 (as produced by sanitize_utf8) to code points with their byte offsets.
void decode_valid(std::string_view s, std::vector<uint32_t>& cpts, std::vector<uint32_t>* byte_offsets = nullptr);

// GPT-2 byte-level BPE: every byte maps to a printable code point (bytes 0x21..0x7E, 0xA1..0xAC, 0xAE..0xFF
// map to themselves, the rest to 0x100 + n in byte order).
const std::string& byte_to_utf8(uint8_t byte);  // UTF-8 of the mapped code point
int utf8_cpt_to_byte(uint32_t cpt);              // inverse; -1 if cpt is not a mapped code point

}  // namespace ilre::model::unicode
