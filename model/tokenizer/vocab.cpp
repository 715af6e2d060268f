// Vocabulary loading (tokenizer.ggml.*), llama.cpp's load-time token attribute rules, tokenize / piece /
// detokenize entry points. The tokenizers themselves live in tokenizer_spm.cpp and tokenizer_bpe.cpp, the
// special-token split in special_tokens.cpp.
//
// Deliberate differences from llama.cpp, all on malformed metadata (llama.cpp warns, asserts or crashes):
//   * a bos/eos/eot/eom/unknown id outside the vocabulary is an error (llama.cpp keeps its default id);
//   * tokenizer.ggml.scores / token_type with a length other than the token count is an error (llama.cpp
//     accepts longer arrays);
//   * duplicate token texts are an error (llama.cpp aborts on an assertion);
//   * add_bos/add_eos without a BOS/EOS token is an error at load (llama.cpp asserts when tokenizing).
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "model/gguf/gguf.h"
#include "ilre/error.h"
#include "model/tokenizer/tokenizer_internal.h"
#include "model/tokenizer/unicode.h"

namespace ilre::model {

namespace {

[[noreturn]] void bad(const GgufFile& f, const std::string& msg) {
  throw Exception(errc::bad_gguf, f.path() + ": " + msg);
}

constexpr std::string_view kSpaceEscape = "\xE2\x96\x81";  // U+2581

bool contains_any(const std::string& s, std::initializer_list<std::string_view> subs) {
  for (auto sub : subs) {
    if (s.find(sub) != std::string::npos) return true;
  }
  return false;
}

struct PreInfo {
  detail::PreTokenizer pre;
  bool clean_spaces;
  bool ignore_merges;
  bool add_bos;
};

// tokenizer.ggml.pre names llama.cpp maps to the expressions implemented in tokenizer_bpe.cpp, with the
// flags llama.cpp sets for each name.
bool lookup_pre(const std::string& name, PreInfo& info) {
  using detail::PreTokenizer;
  auto in = [&](std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  if (name.empty() || name == "default") {
    info = {PreTokenizer::default_bpe, true, false, false};
  } else if (in({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                 "jina-v5-nano"})) {
    info = {PreTokenizer::llama3, true, true, true};
  } else if (in({"dbrx", "smaug-bpe"})) {
    info = {PreTokenizer::llama3, true, false, false};
  } else if (in({"gpt-2", "phi-2", "gigachat", "a.x-4.0", "mellum", "exaone4", "mpt", "olmo", "jais"})) {
    info = {PreTokenizer::gpt2, true, false, false};
  } else if (in({"trillion", "granite-docling"})) {
    info = {PreTokenizer::gpt2, false, false, false};
  } else if (in({"starcoder", "refact", "codeshell", "exaone", "minerva-7b"})) {
    info = {PreTokenizer::starcoder, true, false, false};
  } else if (in({"command-r", "smollm"})) {
    info = {PreTokenizer::starcoder, false, false, false};
  } else if (in({"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open"})) {
    info = {PreTokenizer::qwen2, false, false, false};
  } else if (in({"stablelm2", "megrez"})) {
    info = {PreTokenizer::qwen2, true, false, false};
  } else {
    return false;
  }
  return true;
}

uint32_t attr_from_type(int64_t type) {
  switch (type) {
    case 1:
      return detail::kAttrNormal;
    case 2:
      return detail::kAttrUnknown;
    case 3:
      return detail::kAttrControl;
    case 4:
      return detail::kAttrUserDefined;
    case 5:
      return detail::kAttrUnused;
    case 6:
      return detail::kAttrByte;
    default:
      return detail::kAttrUndefined;
  }
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

}  // namespace

std::shared_ptr<const Vocab> Vocab::from_gguf(const GgufFile& file) {
  return std::make_shared<const detail::VocabImpl>(file);
}

std::string sanitize_utf8(std::string_view text, uint64_t* replaced_bytes) {
  return unicode::sanitize_utf8(text, replaced_bytes);
}

namespace detail {

VocabImpl::VocabImpl(const GgufFile& f) {
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) bad(f, "tokenizer.ggml.model is missing (no tokenizer in this file)");
  const std::string pre_name = f.get_string("tokenizer.ggml.pre").value_or("");
  if (*model == "llama") {
    kind_ = VocabKind::spm;
    bos_ = 1;
    eos_ = 2;
    unk_ = 0;
    add_space_prefix_ = true;
    clean_spaces_ = false;
    add_bos_ = true;
    add_eos_ = false;
  } else if (*model == "gpt2") {
    kind_ = VocabKind::bpe;
    PreInfo info{};
    if (!lookup_pre(pre_name, info)) {
      throw Exception(errc::unsupported, f.path() + ": tokenizer.ggml.pre '" + pre_name +
                                             "' is not a supported pre-tokenizer (supported: default, gpt-2, "
                                             "llama-bpe/llama3 and their llama.cpp aliases, mpt, olmo, "
                                             "starcoder, refact, command-r, qwen2)");
    }
    pre_ = info.pre;
    clean_spaces_ = info.clean_spaces;
    ignore_merges_ = info.ignore_merges;
    add_bos_ = info.add_bos;
    add_eos_ = false;
    add_space_prefix_ = false;
    bos_ = 11;
    eos_ = 11;
  } else {
    throw Exception(errc::unsupported, f.path() + ": tokenizer.ggml.model '" + *model +
                                           "' is not supported (supported: 'llama' = SentencePiece, "
                                           "'gpt2' = byte-level BPE)");
  }
  if (auto v = f.get_bool("tokenizer.ggml.add_space_prefix")) add_space_prefix_ = *v;

  load_tokens(f);
  load_special_ids(f);
  apply_llama_attr_rules(f);
  build_pieces();
}

void VocabImpl::load_tokens(const GgufFile& f) {
  const std::vector<std::string>* tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (tokens == nullptr) bad(f, "tokenizer.ggml.tokens is missing");
  if (tokens->empty()) bad(f, "tokenizer.ggml.tokens is empty");
  if (tokens->size() >= static_cast<size_t>(INT32_MAX)) bad(f, "tokenizer.ggml.tokens has too many entries");
  const size_t n = tokens->size();
  texts_ = *tokens;
  for (size_t i = 0; i < n; ++i) {
    if (texts_[i].empty()) texts_[i] = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp
    max_token_len_ = std::max(max_token_len_, texts_[i].size());
  }

  scores_.assign(n, 0.0f);
  if (auto scores = f.get_float_array("tokenizer.ggml.scores")) {
    if (scores->size() != n) {
      bad(f, "tokenizer.ggml.scores has " + std::to_string(scores->size()) + " entries but tokenizer.ggml.tokens has " +
                 std::to_string(n));
    }
    for (size_t i = 0; i < n; ++i) scores_[i] = static_cast<float>((*scores)[i]);
  }
  types_.assign(n, TokenType::normal);
  attrs_.assign(n, kAttrNormal);
  if (auto types = f.get_int_array("tokenizer.ggml.token_type")) {
    if (types->size() != n) {
      bad(f, "tokenizer.ggml.token_type has " + std::to_string(types->size()) +
                 " entries but tokenizer.ggml.tokens has " + std::to_string(n));
    }
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = (*types)[i];
      types_[i] = (t >= 0 && t <= 6) ? static_cast<TokenType>(t) : TokenType::undefined;
      attrs_[i] = attr_from_type(t);
    }
  }
  const int32_t dup = table_.build(&texts_);
  if (dup >= 0) {
    bad(f, "tokenizer.ggml.tokens has a duplicate entry '" + texts_[static_cast<size_t>(dup)] + "' (id " +
               std::to_string(dup) + " repeats id " + std::to_string(table_.find(texts_[static_cast<size_t>(dup)])) +
               ")");
  }

  if (kind_ == VocabKind::bpe) {
    const std::vector<std::string>* merges = f.get_string_array("tokenizer.ggml.merges");
    if (merges == nullptr) bad(f, "tokenizer.ggml.merges is missing (required for a 'gpt2' tokenizer)");
    pair_ranks_.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const std::string& m = (*merges)[i];
      const size_t pos = m.find(' ', 1);
      if (pos == std::string::npos) continue;  // llama.cpp stores ("", ""), which can never match
      const std::string_view first(m.data(), pos);
      const std::string_view second(m.data() + pos + 1, m.size() - pos - 1);
      const int32_t a = table_.find(first);
      const int32_t b = table_.find(second);
      const auto rank = static_cast<int32_t>(i);
      if (a >= 0 && b >= 0) {
        pair_ranks_.emplace((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b),
                            rank);
      } else {
        std::string key = std::to_string(first.size()) + ":";
        key.append(first);
        key.append(second);
        text_ranks_.emplace(std::move(key), rank);
      }
    }
  }

  // Byte-fallback tokens of SentencePiece vocabularies: <0xXX>, else the byte itself (llama.cpp's byte_to_token).
  byte_tokens_.fill(-1);
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
    int32_t id = table_.find(std::string_view(buf, 6));
    if (id < 0 && b != 0) {
      const char c = static_cast<char>(b);
      id = table_.find(std::string_view(&c, 1));
    }
    byte_tokens_[static_cast<size_t>(b)] = id;
  }
}

void VocabImpl::load_special_ids(const GgufFile& f) {
  const auto n = static_cast<int64_t>(texts_.size());
  struct Key {
    const char* name;
    TokenId* id;
    bool strict;  // out of range is an error (ilre) rather than ignored (llama.cpp)
  };
  const Key keys[] = {
      {"tokenizer.ggml.bos_token_id", &bos_, true},
      {"tokenizer.ggml.eos_token_id", &eos_, true},
      {"tokenizer.ggml.eot_token_id", &eot_, true},
      {"tokenizer.ggml.eom_token_id", &eom_, true},
      {"tokenizer.ggml.unknown_token_id", &unk_, true},
      {"tokenizer.ggml.fim_pre_token_id", &fim_pre_, false},
      {"tokenizer.ggml.fim_suf_token_id", &fim_suf_, false},
      {"tokenizer.ggml.fim_mid_token_id", &fim_mid_, false},
      {"tokenizer.ggml.fim_pad_token_id", &fim_pad_, false},
      {"tokenizer.ggml.fim_rep_token_id", &fim_rep_, false},
      {"tokenizer.ggml.fim_sep_token_id", &fim_sep_, false},
      {"tokenizer.ggml.prefix_token_id", &fim_pre_, false},
      {"tokenizer.ggml.suffix_token_id", &fim_suf_, false},
      {"tokenizer.ggml.middle_token_id", &fim_mid_, false},
  };
  for (const Key& k : keys) {
    if (*k.id >= n) *k.id = -1;  // a default id the vocabulary is too small for
    const auto v = f.get_int(k.name);
    if (!v) continue;
    if (*v < 0 || *v >= n) {
      if (k.strict) {
        bad(f, std::string(k.name) + " = " + std::to_string(*v) + " is outside the vocabulary of " +
                   std::to_string(n) + " tokens");
      }
      continue;
    }
    *k.id = static_cast<TokenId>(*v);
  }
  if (auto v = f.get_bool("tokenizer.ggml.add_bos_token")) add_bos_ = *v;
  if (auto v = f.get_bool("tokenizer.ggml.add_eos_token")) add_eos_ = *v;
  if (add_bos_ && bos_ < 0) bad(f, "the tokenizer adds a BOS token but has none (tokenizer.ggml.bos_token_id)");
  if (add_eos_ && eos_ < 0) bad(f, "the tokenizer adds an EOS token but has none (tokenizer.ggml.eos_token_id)");
}

// llama.cpp's load-time rules that derive special roles and attributes from token texts.
void VocabImpl::apply_llama_attr_rules(const GgufFile& f) {
  const size_t n = texts_.size();
  struct Role {
    TokenId* id;
    std::vector<std::string_view> texts;
  };
  std::vector<Role> roles = {
      {&eot_,
       {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
        "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
        "<end_of_utterance>"}},
      {&eom_, {"<|eom_id|>"}},
      {&fim_pre_,
       {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
        "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"}},
      {&fim_suf_,
       {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>",
        "<SUF>", "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"}},
      {&fim_mid_,
       {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",
        "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"}},
      {&fim_pad_, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
      {&fim_rep_, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
      {&fim_sep_, {"<|file_sep|>"}},
  };
  // Candidate ids per role that still needs detecting.
  std::vector<std::vector<TokenId>> cands(roles.size());
  bool ambiguous = false;
  for (size_t r = 0; r < roles.size(); ++r) {
    if (*roles[r].id >= 0) continue;
    for (auto t : roles[r].texts) {
      const int32_t id = table_.find(t);
      if (id >= 0) cands[r].push_back(id);
    }
    ambiguous = ambiguous || cands[r].size() > 1;
  }
  if (ambiguous) {
    // llama.cpp takes the first candidate in the iteration order of its std::unordered_map<std::string, id>
    // (filled with operator[] in id order); the same container here iterates in the same order.
    std::unordered_map<std::string, int32_t> token_to_id;
    for (size_t i = 0; i < n; ++i) token_to_id[texts_[i]] = static_cast<int32_t>(i);
    std::unordered_map<int32_t, size_t> position;
    size_t k = 0;
    for (const auto& [text, id] : token_to_id) position[id] = k++;
    for (auto& c : cands) {
      std::sort(c.begin(), c.end(), [&](TokenId a, TokenId b) { return position[a] < position[b]; });
    }
  }
  for (size_t r = 0; r < roles.size(); ++r) {
    if (cands[r].empty()) continue;
    const TokenId id = cands[r].front();
    *roles[r].id = id;
    attrs_[static_cast<size_t>(id)] |= kAttrControl;
  }

  // End-of-generation tokens.
  eog_.assign(n, 0);
  for (TokenId id : {fim_pad_, fim_rep_, fim_sep_}) {
    if (id >= 0) eog_[static_cast<size_t>(id)] = 1;
  }
  static const std::string_view kEogTexts[] = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
      "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
      "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
      "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~["};
  for (auto t : kEogTexts) {
    const int32_t id = table_.find(t);
    if (id < 0) continue;
    eog_[static_cast<size_t>(id)] = 1;
    attrs_[static_cast<size_t>(id)] |= kAttrControl;
  }
  // gpt-oss: always rendered.
  for (auto t : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
    const int32_t id = table_.find(t);
    if (id >= 0) attrs_[static_cast<size_t>(id)] = kAttrUserDefined;
  }
  for (TokenId id : {eos_, eot_, eom_}) {
    if (id >= 0) eog_[static_cast<size_t>(id)] = 1;
  }
  auto eog_text = [&](std::string_view t) {
    const int32_t id = table_.find(t);
    return id >= 0 && eog_[static_cast<size_t>(id)] ? id : -1;
  };
  {
    const bool has_return = eog_text("<|return|>") >= 0;
    const bool has_call = eog_text("<|call|>") >= 0 || eog_text("<|calls|>") >= 0;
    const bool has_flush = eog_text("<|flush|>") >= 0;
    const int32_t end_id = eog_text("<|end|>");
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
      eog_[static_cast<size_t>(end_id)] = 0;
      attrs_[static_cast<size_t>(end_id)] = kAttrUserDefined;
    }
  }
  {
    const bool marker = eog_text("<|tool_response>") >= 0 || eog_text("<|plamo:eos|>") >= 0;
    const int32_t s_id = eog_text("</s>");
    if (marker && s_id >= 0) {
      eog_[static_cast<size_t>(s_id)] = 0;
      attrs_[static_cast<size_t>(s_id)] = kAttrNormal;
    }
  }

  // Special tokens in llama.cpp's cache_special_tokens order (std::sort by length, longest first; libstdc++'s
  // std::sort on the same input gives the same order for equal lengths).
  std::vector<TokenId> order;
  for (size_t i = 0; i < n; ++i) {
    if (attrs_[i] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) order.push_back(static_cast<TokenId>(i));
  }
  std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) {
    return texts_[static_cast<size_t>(a)].size() > texts_[static_cast<size_t>(b)].size();
  });

  // Per-model strip attributes (llama.cpp sets these by model / pre-tokenizer / architecture name).
  std::string model_name = f.get_string("general.name").value_or("");
  std::transform(model_name.begin(), model_name.end(), model_name.begin(),
                 [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
  const std::string pre_name = f.get_string("tokenizer.ggml.pre").value_or("");
  const std::string arch = f.get_string("general.architecture").value_or("");
  auto set_attr = [&](std::string_view text, uint32_t bit, bool on) {
    const int32_t id = table_.find(text);
    if (id < 0) return;
    uint32_t& a = attrs_[static_cast<size_t>(id)];
    a = on ? (a | bit) : (a & ~bit);
  };
  if (contains_any(pre_name, {"jina-v2-de", "jina-v2-es", "jina-v2-code"}) ||
      contains_any(arch, {"nomic-bert-moe", "jina-bert-v3"})) {
    set_attr("<mask>", kAttrLstrip, true);
  } else if (contains_any(model_name, {"phi-3", "phi3"})) {
    for (TokenId id : order) attrs_[static_cast<size_t>(id)] |= kAttrRstrip;
    set_attr("</s>", kAttrRstrip, true);
    for (auto t : {"<unk>", "<s>", "<|endoftext|>"}) set_attr(t, kAttrRstrip, false);
  } else if (contains_any(model_name, {"modern-bert"})) {
    set_attr("[MASK]", kAttrLstrip, true);
  }
  special_.build(std::move(order), texts_, attrs_);
}

std::string VocabImpl::piece_for(TokenId id) const {
  const auto i = static_cast<size_t>(id);
  const uint32_t a = attrs_[i];
  const std::string& text = texts_[i];
  if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return text;
  if (a & kAttrNormal) {
    if (kind_ == VocabKind::spm) return replace_all(text, kSpaceEscape, " ");
    // Byte-level BPE: every code point maps back to one byte.
    std::string out;
    size_t off = 0;
    while (off < text.size()) {
      const uint32_t cpt = unicode::decode_lenient(text, off);
      const int b = unicode::utf8_cpt_to_byte(cpt);
      if (b >= 0) {
        out.push_back(static_cast<char>(b));
        continue;
      }
      std::string utf8;
      unicode::append_utf8(utf8, cpt);
      out += "[UNK_BYTE_0x";
      static const char* hex = "0123456789abcdef";
      for (char c : utf8) {
        out.push_back(hex[static_cast<uint8_t>(c) >> 4]);
        out.push_back(hex[static_cast<uint8_t>(c) & 15]);
      }
      out += text + "]";
    }
    return out;
  }
  if (a & kAttrByte) {
    // llama.cpp: strtol(text.substr(3, 2), 16).
    const std::string hex2 = text.size() > 3 ? text.substr(3, 2) : std::string();
    return std::string(1, static_cast<char>(std::strtol(hex2.c_str(), nullptr, 16)));
  }
  return {};
}

void VocabImpl::build_pieces() {
  for (size_t i = 0; i < texts_.size(); ++i) {
    if ((attrs_[i] & kAttrByte) && !(attrs_[i] & (kAttrUnknown | kAttrControl | kAttrUserDefined | kAttrNormal)) &&
        texts_[i].size() < 3) {
      throw Exception(errc::bad_gguf, "tokenizer.ggml.tokens: byte token " + std::to_string(i) + " '" + texts_[i] +
                                          "' is not of the form <0xXX>");
    }
  }
  pieces_.resize(texts_.size());
  for (size_t i = 0; i < texts_.size(); ++i) pieces_[i] = piece_for(static_cast<TokenId>(i));
}

void VocabImpl::check_id(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= texts_.size()) {
    throw Exception(errc::out_of_range, "token id " + std::to_string(id) + " is outside the vocabulary (" +
                                            std::to_string(texts_.size()) + " tokens)");
  }
}

bool VocabImpl::is_eog(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < eog_.size() && eog_[static_cast<size_t>(id)] != 0;
}

TokenType VocabImpl::token_type(TokenId id) const {
  check_id(id);
  return types_[static_cast<size_t>(id)];
}

const std::string& VocabImpl::token_text(TokenId id) const {
  check_id(id);
  return texts_[static_cast<size_t>(id)];
}

TokenId VocabImpl::find_token(std::string_view text) const { return table_.find(text); }

int32_t VocabImpl::merge_rank(std::string_view a, int32_t id_a, std::string_view b, int32_t id_b) const {
  if (id_a >= 0 && id_b >= 0) {
    const auto it =
        pair_ranks_.find((static_cast<uint64_t>(static_cast<uint32_t>(id_a)) << 32) | static_cast<uint32_t>(id_b));
    return it == pair_ranks_.end() ? -1 : it->second;
  }
  if (text_ranks_.empty()) return -1;
  std::string key = std::to_string(a.size()) + ":";
  key.append(a);
  key.append(b);
  const auto it = text_ranks_.find(key);
  return it == text_ranks_.end() ? -1 : it->second;
}

void VocabImpl::tokenize_segment(std::string_view text, bool parse_special, bool& prev_special,
                                 std::vector<TokenId>& out) const {
  std::vector<Fragment> frags;
  special_.partition(text, parse_special, frags);
  std::string buf;
  for (const Fragment& fr : frags) {
    if (fr.is_token) {
      out.push_back(fr.token);
      prev_special = true;
      continue;
    }
    const std::string_view raw = text.substr(fr.offset, fr.length);
    if (kind_ == VocabKind::spm) {
      buf.clear();
      if (add_space_prefix_ && prev_special) buf.push_back(' ');
      buf.append(raw);
      spm_fragment(replace_all(buf, " ", kSpaceEscape), out);
    } else {
      bpe_tokenize(*this, raw, out);
    }
    prev_special = false;
  }
}

// Long SPM fragments are cut where two adjacent characters never occur next to each other in any vocabulary
// text (condition 2 of safe_cut below): the merges cannot cross such a cut, so each piece gives the ids it
// gives inside the whole fragment, and the merge heaps stay small (cache-friendly). Only cuts between two
// well-formed characters are used: symbol boundaries then agree, and a vocabulary text containing both
// characters adjacently decodes to that pair (a well-formed character never starts with a continuation byte).
void VocabImpl::spm_fragment(std::string_view text, std::vector<TokenId>& out) const {
  constexpr size_t kSplitAbove = 64;
  if (text.size() <= kSplitAbove) {
    spm_tokenize(*this, text, out);
    return;
  }
  build_cut_tables();
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  size_t piece = 0;
  size_t off = 0;
  bool prev_valid = false;
  uint32_t prev = 0;
  while (off < text.size()) {
    const size_t len = std::min(unicode::utf8_len_from_lead(p[off]), text.size() - off);
    const bool valid = unicode::strict_sequence_length(p + off, text.size() - off) == static_cast<int>(len);
    uint32_t cpt = 0;
    if (valid) {
      size_t o = off;
      cpt = unicode::decode_lenient(text, o);
      if (prev_valid && off > piece && !vocab_pairs_.contains(prev, cpt)) {
        spm_tokenize(*this, text.substr(piece, off - piece), out);
        piece = off;
      }
    }
    prev_valid = valid;
    prev = cpt;
    off += len;
  }
  spm_tokenize(*this, text.substr(piece), out);
}

std::vector<TokenId> VocabImpl::tokenize(std::string_view text, const TokenizeOptions& options) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 2);
  if (options.add_special && add_bos_) out.push_back(bos_);
  bool prev_special = true;
  tokenize_segment(text, options.parse_special, prev_special, out);
  if (options.add_special && add_eos_) out.push_back(eos_);
  return out;
}

std::string VocabImpl::token_to_piece(TokenId id, bool render_special) const {
  check_id(id);
  if (!render_special && (attrs_[static_cast<size_t>(id)] & (kAttrUnknown | kAttrControl))) return {};
  return pieces_[static_cast<size_t>(id)];
}

std::string VocabImpl::detokenize(std::span<const TokenId> ids, bool render_special) const {
  std::string text;
  bool remove_space = add_space_prefix_;
  for (TokenId id : ids) {
    check_id(id);
    const auto i = static_cast<size_t>(id);
    if (render_special || !(attrs_[i] & (kAttrUnknown | kAttrControl))) {
      std::string_view piece = pieces_[i];
      if (remove_space && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);  // lstrip = 1
      text += piece;
    }
    remove_space = false;
  }
  if (!clean_spaces_ || text.empty()) return text;

  // llama.cpp's three in-place clean-up passes, byte for byte.
  std::string& t = text;
  int64_t total = static_cast<int64_t>(t.size());
  const int64_t total1 = total;
  total = total ? 1 : 0;
  for (int64_t i = 1; i < total1; ++i) {
    const char x = t[static_cast<size_t>(i)];
    if (t[static_cast<size_t>(i - 1)] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --total;
    t[static_cast<size_t>(total++)] = x;
  }
  const int64_t total2 = total;
  total = total ? 1 : 0;
  for (int64_t i = 1; i < total2; ++i) {
    const char x = t[static_cast<size_t>(i)];
    if (x == '\'' && i + 1 < total2 && t[static_cast<size_t>(i - 1)] == ' ' && t[static_cast<size_t>(i + 1)] == ' ') {
      --total;
      t[static_cast<size_t>(++i)] = '\0';
    }
    t[static_cast<size_t>(total++)] = x;
  }
  const int64_t total3 = total;
  total = total ? 1 : 0;
  for (int64_t i = 1; i < total3; ++i) {
    const char x = t[static_cast<size_t>(i)];
    if (t[static_cast<size_t>(i - 1)] == ' ' && x == '\'' && i + 1 < total3) {
      const char x1 = t[static_cast<size_t>(i + 1)];
      if (x1 == 's' || x1 == 'm') {
        --total;
      } else if (x1 != 't' && x1 != 'd' && i + 2 < total3) {
        const char x2 = t[static_cast<size_t>(i + 2)];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) --total;
      }
    }
    t[static_cast<size_t>(total++)] = x;
  }
  t.resize(static_cast<size_t>(total));
  return text;
}

// ---------------------------------------------------------------------------------------------------------
// Streaming cut tables

namespace {
void add_pairs(std::string_view text, PairSet& out) {
  size_t off = 0;
  uint32_t prev = 0;
  bool have = false;
  while (off < text.size()) {
    const uint32_t c = unicode::decode_lenient(text, off);
    if (have) out.insert(prev, c);
    prev = c;
    have = true;
  }
}
inline bool c_isspace(uint32_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
}  // namespace

void VocabImpl::build_cut_tables() const {
  std::call_once(cut_once_, [this] {
    if (kind_ == VocabKind::spm) {
      for (const std::string& t : texts_) add_pairs(t, vocab_pairs_);
    }
    const auto& order = special_.order();
    for (size_t r = 0; r < order.size(); ++r) {
      const std::string& t = texts_[static_cast<size_t>(order[r])];
      add_pairs(t, special_pairs_all_);
      if (special_.eligible(r, false)) add_pairs(t, special_pairs_plain_);
    }
  });
}

// A cut between adjacent code points a|b of the (valid UTF-8) input is safe when
//  1. no special text that can be split out contains a, b adjacently: then no occurrence spans the cut, and the
//     special-token partition of the whole text is the partitions of both sides put together (every token's
//     placements on one side depend only on occurrences and placements on that side); with strip attributes
//     the whitespace next to a token could cross the cut, so cuts next to ASCII whitespace are refused then;
//  2. SPM: no vocabulary text contains a, b adjacently (spaces as U+2581): a merge joins two symbols into a
//     vocabulary text, so no symbol ever spans the cut; the candidate pair across the cut never enters the
//     queue, and merges on one side never change candidates on the other, so each side ends with the symbols
//     it has alone (the heap order restricted to one side is unchanged). The right side gets no space prefix
//     unless the left side ended with a special token, exactly as in the whole text (prev_special);
//  3. BPE: the pre-tokenizer has a stable word boundary there (pre_tokenizer_safe_cut); merges never cross
//     words.
bool VocabImpl::special_safe_cut(uint32_t a, uint32_t b, bool parse_special) const {
  build_cut_tables();
  if (special_.has_strip() && (c_isspace(a) || c_isspace(b))) return false;
  return !(parse_special ? special_pairs_all_ : special_pairs_plain_).contains(a, b);
}

bool VocabImpl::safe_cut(uint32_t a, uint32_t b, bool parse_special) const {
  if (!special_safe_cut(a, b, parse_special)) return false;
  if (kind_ == VocabKind::spm) {
    const uint32_t ea = a == ' ' ? 0x2581 : a;
    const uint32_t eb = b == ' ' ? 0x2581 : b;
    return !vocab_pairs_.contains(ea, eb);
  }
  return pre_tokenizer_safe_cut(pre_, a, b);
}

}  // namespace detail
}  // namespace ilre::model
