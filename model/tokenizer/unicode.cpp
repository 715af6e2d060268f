#include "model/tokenizer/unicode.h"

#include <utf8proc.h>

#include <array>

namespace ilre::model::unicode {

namespace {

uint16_t category_flag(uint32_t cpt) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cpt))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return kLetter;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
      return kAccentMark;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return kNumber;
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return kPunctuation;
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
      return kSymbol;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return kSeparator;
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
      return kControl;
    default:
      break;
  }
  // Unassigned in utf8proc's Unicode version. Code points assigned by Unicode 15.1 (llama.cpp's table):
  // CJK Unified Ideographs Extension I (Lo) and the new ideographic description characters (So).
  if (cpt >= 0x2EBF0 && cpt <= 0x2EE5D) return kLetter;
  if ((cpt >= 0x2FFC && cpt <= 0x2FFF) || cpt == 0x31EF) return kSymbol;
  return kUndefined;
}

bool white_space_property(uint32_t cpt) {
  if (cpt >= 0x09 && cpt <= 0x0D) return true;
  switch (cpt) {
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cpt >= 0x2000 && cpt <= 0x200A;
  }
}

struct AsciiFlags {
  std::array<uint16_t, 128> f{};
  AsciiFlags() {
    for (uint32_t c = 0; c < 128; ++c) {
      f[c] = static_cast<uint16_t>(category_flag(c) | (white_space_property(c) ? kWhitespace : 0));
    }
  }
};

struct ByteMap {
  std::array<std::string, 256> to_utf8;
  std::array<int16_t, 512> from_cpt;  // every mapped code point is < 0x144
  ByteMap() {
    from_cpt.fill(-1);
    std::array<uint32_t, 256> cpt{};
    std::array<bool, 256> direct{};
    for (int b = 0x21; b <= 0x7E; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) cpt[b] = direct[b] ? static_cast<uint32_t>(b) : 256 + n++;
    for (int b = 0; b < 256; ++b) {
      append_utf8(to_utf8[b], cpt[b]);
      from_cpt[cpt[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

uint16_t cpt_flags(uint32_t cpt) {
  static const AsciiFlags ascii;
  if (cpt < 128) return ascii.f[cpt];
  if (cpt > 0x10FFFF) return kUndefined;
  return static_cast<uint16_t>(category_flag(cpt) | (white_space_property(cpt) ? kWhitespace : 0));
}

size_t utf8_len_from_lead(uint8_t lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

uint32_t decode_lenient(std::string_view s, size_t& offset) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + offset;
  const size_t avail = s.size() - offset;
  const uint8_t b0 = p[0];
  if (b0 < 0x80) {
    offset += 1;
    return b0;
  }
  auto cont = [&](size_t k) { return k < avail && (p[k] & 0xC0) == 0x80; };
  if ((b0 & 0x40) == 0) {  // stray continuation byte
    offset += 1;
    return kReplacementChar;
  }
  if ((b0 & 0x20) == 0) {
    if (!cont(1)) {
      offset += 1;
      return kReplacementChar;
    }
    offset += 2;
    return (static_cast<uint32_t>(b0 & 0x1F) << 6) | (p[1] & 0x3F);
  }
  if ((b0 & 0x10) == 0) {
    if (!cont(1) || !cont(2)) {
      offset += 1;
      return kReplacementChar;
    }
    offset += 3;
    return (static_cast<uint32_t>(b0 & 0x0F) << 12) | (static_cast<uint32_t>(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  }
  if ((b0 & 0x08) == 0) {
    if (!cont(1) || !cont(2) || !cont(3)) {
      offset += 1;
      return kReplacementChar;
    }
    const uint32_t cpt = (static_cast<uint32_t>(b0 & 0x07) << 18) | (static_cast<uint32_t>(p[1] & 0x3F) << 12) |
                         (static_cast<uint32_t>(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    if (cpt > 0x10FFFF) {
      offset += 1;
      return kReplacementChar;
    }
    offset += 4;
    return cpt;
  }
  offset += 1;
  return kReplacementChar;
}

std::vector<uint32_t> decode_lenient_all(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) out.push_back(decode_lenient(s, i));
  return out;
}

void append_utf8(std::string& out, uint32_t cpt) {
  if (cpt <= 0x7F) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt <= 0x7FF) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt <= 0xFFFF) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | ((cpt >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

int strict_sequence_length(const uint8_t* p, size_t avail) {
  const uint8_t b0 = p[0];
  if (b0 < 0x80) return 1;
  int need = 0;
  uint8_t lo = 0x80;
  uint8_t hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 == 0xE0) {
    need = 2;
    lo = 0xA0;
  } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
    need = 2;
  } else if (b0 == 0xED) {
    need = 2;
    hi = 0x9F;
  } else if (b0 == 0xF0) {
    need = 3;
    lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    need = 3;
  } else if (b0 == 0xF4) {
    need = 3;
    hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k <= need; ++k) {
    if (static_cast<size_t>(k) >= avail) return -1;
    const uint8_t b = p[k];
    if (k == 1 ? (b < lo || b > hi) : ((b & 0xC0) != 0x80)) return 0;
  }
  return need + 1;
}

std::string sanitize_utf8(std::string_view s, uint64_t* replaced_bytes) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0;
  uint64_t replaced = 0;
  while (i < s.size()) {
    const int len = strict_sequence_length(p + i, s.size() - i);
    if (len > 0) {
      out.append(s.data() + i, static_cast<size_t>(len));
      i += static_cast<size_t>(len);
    } else {
      append_utf8(out, kReplacementChar);
      ++replaced;
      ++i;
    }
  }
  if (replaced_bytes != nullptr) *replaced_bytes += replaced;
  return out;
}

void decode_valid(std::string_view s, std::vector<uint32_t>& cpts, std::vector<uint32_t>* byte_offsets) {
  cpts.clear();
  if (byte_offsets != nullptr) byte_offsets->clear();
  size_t i = 0;
  while (i < s.size()) {
    if (byte_offsets != nullptr) byte_offsets->push_back(static_cast<uint32_t>(i));
    cpts.push_back(decode_lenient(s, i));
  }
}

const std::string& byte_to_utf8(uint8_t byte) { return byte_map().to_utf8[byte]; }

int utf8_cpt_to_byte(uint32_t cpt) {
  if (cpt >= byte_map().from_cpt.size()) return -1;
  return byte_map().from_cpt[cpt];
}

}  // namespace ilre::model::unicode
