// libFuzzer target for the tokenizers (model/tokenizer/vocab.cpp, tokenizer_spm.cpp, tokenizer_bpe.cpp,
// special_tokens.cpp, unicode.cpp) and the streaming tokenizer (model/tokenizer/streaming_tokenizer.cpp) on arbitrary
// bytes.
//
// Three vocabularies are loaded once (LLVMFuzzerInitialize) from the test data directory (compile definition
// ILRE_FUZZ_DATA_DIR = <source>/tests/data; the environment variable of the same name overrides it):
//   0  models/stories260K-f32.gguf              SPM with byte fallback (tiny vocabulary: most text -> bytes)
//   1  tokenizer/ggml-vocab-llama-spm.gguf      SPM, Llama 2's 32000 tokens
//   2  tokenizer/ggml-vocab-gpt-2.gguf          byte-level BPE, GPT-2 pre-tokenizer
//
// Input: 4 header bytes, then the document (any bytes).
//   byte 0: bits 0-1 vocabulary (0-2; 3 = checkpoint mode, below); bit 2 add_special; bit 3 parse_special; bits 4-5 chunking
//           (0: fixed size 1 + byte 1; 1: single bytes; 2: sizes 1 + each nibble of bytes 1-2, cycled;
//           3: all at once, then an empty feed); bit 6 small max_pending_bytes (16 + byte 2: forced cuts);
//           bit 7 render_special when detokenizing.
//   byte 3: bit 0 checkpoint round trip: after chunk number (byte 3 >> 1) the stream is checkpointed,
//           serialised (Checkpoint::to_bytes / from_bytes) and continued in a resumed tokenizer; the ids
//           must not change.
// Checkpoint mode (byte 0 bits 0-1 == 3): the document is a serialised Checkpoint from anywhere (e.g. a store's
// state blob). from_bytes must accept it or throw Exception(checksum_mismatch); a resumed tokenizer (vocabulary
// byte 1 % 3) is then fed a little more text and finished, and every id it yields must be in the vocabulary.
// Oracle (the StreamingTokenizer guarantee, vocab.h): the concatenation of every feed() and finish() equals
// Vocab::tokenize(sanitize_utf8(document)) with the same options whenever forced_cuts() == 0, and
// replaced_bytes() is what sanitize_utf8 replaced. Also: every id is inside the vocabulary, the raw
// (unsanitised) document tokenises too, and token_to_piece / detokenize of the ids do not fail. A mismatch is
// __builtin_trap(); an exception escaping, a sanitizer report, an over-limit allocation or a timeout are
// findings as well.
//
// Built with -DILRE_TOKENIZER_FUZZ_SEEDS (and without -fsanitize=fuzzer) the same file is
// `tokenizer_fuzz_seeds`, which writes a seed corpus (llama.cpp's tokenizer test texts, special-token texts,
// invalid UTF-8) under every vocabulary / option / chunking, each checked against the oracle.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ilre/error.h"
#include "model/gguf/gguf.h"
#include "model/tokenizer/vocab.h"

#ifndef ILRE_FUZZ_DATA_DIR
#error "ILRE_FUZZ_DATA_DIR must name tests/data"
#endif

namespace {

using namespace ilre::model;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

constexpr size_t kHeader = 4;

std::vector<std::shared_ptr<const Vocab>>& vocabs() {
  static std::vector<std::shared_ptr<const Vocab>> v;
  return v;
}

void load_vocabs() {
  const char* env = std::getenv("ILRE_FUZZ_DATA_DIR");
  const std::string dir = env && *env ? env : ILRE_FUZZ_DATA_DIR;
  for (const char* rel :
       {"/models/stories260K-f32.gguf", "/tokenizer/ggml-vocab-llama-spm.gguf", "/tokenizer/ggml-vocab-gpt-2.gguf"}) {
    vocabs().push_back(Vocab::from_gguf(*GgufFile::open(dir + rel)));  // a missing file throws: loud failure
  }
}

void check_ids(const Vocab& v, const std::vector<TokenId>& ids, bool render_special) {
  for (TokenId id : ids) {
    FUZZ_CHECK(id >= 0 && id < v.n_tokens());
    (void)v.token_to_piece(id, render_special);
    (void)v.token_type(id);
  }
  (void)v.detokenize(ids, render_special);
}

void run_checkpoint_blob(const uint8_t* data, size_t size) {
  const uint8_t b0 = data[0], b1 = data[1];
  const std::shared_ptr<const Vocab>& holder = vocabs()[b1 % 3];
  StreamingTokenizer::Checkpoint cp;
  try {
    cp = StreamingTokenizer::Checkpoint::from_bytes({data + kHeader, size - kHeader});
  } catch (const ilre::Exception& e) {
    FUZZ_CHECK(e.code() == ilre::errc::checksum_mismatch);
    return;
  }
  // from_bytes refuses unknown flag bits and trailing bytes, so an accepted blob is canonical.
  FUZZ_CHECK(cp.to_bytes() == std::vector<uint8_t>(data + kHeader, data + size));
  TokenizeOptions opt;
  opt.add_special = (b0 >> 2) & 1;
  opt.parse_special = (b0 >> 3) & 1;
  StreamingOptions sopt;
  if ((b0 >> 6) & 1) sopt.max_pending_bytes = 16 + data[2];
  StreamingTokenizer st = StreamingTokenizer::resume(holder, opt, cp, sopt);
  std::vector<TokenId> ids = st.feed(" more text, <s> and \xe2\x96");
  const std::vector<TokenId> tail = st.finish();
  ids.insert(ids.end(), tail.begin(), tail.end());
  check_ids(*holder, ids, (b0 >> 7) & 1);
}

// Returns the number of forced cuts (the seed writer reports them).
uint64_t run_one(const uint8_t* data, size_t size) {
  if (size < kHeader) return 0;
  const uint8_t b0 = data[0], b1 = data[1], b2 = data[2], b3 = data[3];
  if ((b0 & 3) == 3) {
    run_checkpoint_blob(data, size);
    return 0;
  }
  const std::shared_ptr<const Vocab>* holder = &vocabs()[b0 & 3];
  const Vocab& vocab = **holder;
  TokenizeOptions opt;
  opt.add_special = (b0 >> 2) & 1;
  opt.parse_special = (b0 >> 3) & 1;
  const int chunking = (b0 >> 4) & 3;
  const bool small_pending = (b0 >> 6) & 1;
  const bool render_special = (b0 >> 7) & 1;
  const std::string_view doc(reinterpret_cast<const char*>(data + kHeader), size - kHeader);

  // Whole text, sanitised as the streaming tokenizer does.
  uint64_t replaced = 0;
  const std::string clean = sanitize_utf8(doc, &replaced);
  const std::vector<TokenId> whole = vocab.tokenize(clean, opt);
  check_ids(vocab, whole, render_special);
  // The raw bytes as well (SPM byte fallback / BPE's lenient decoding of invalid UTF-8).
  check_ids(vocab, vocab.tokenize(doc, opt), render_special);

  StreamingOptions sopt;
  if (small_pending) sopt.max_pending_bytes = 16 + b2;
  StreamingTokenizer st(*holder, opt, sopt);
  std::vector<TokenId> streamed;
  const bool round_trip = b3 & 1;
  const size_t round_trip_after = b3 >> 1;
  size_t n_fed = 0;
  auto feed = [&](std::string_view chunk) {
    const std::vector<TokenId> out = st.feed(chunk);
    streamed.insert(streamed.end(), out.begin(), out.end());
    if (round_trip && n_fed++ == round_trip_after) {
      const std::vector<uint8_t> blob = st.checkpoint().to_bytes();
      st = StreamingTokenizer::resume(*holder, opt, StreamingTokenizer::Checkpoint::from_bytes(blob), sopt);
    }
  };
  const uint8_t sizes[4] = {static_cast<uint8_t>(b1 & 15), static_cast<uint8_t>(b1 >> 4),
                            static_cast<uint8_t>(b2 & 15), static_cast<uint8_t>(b2 >> 4)};
  size_t pos = 0, k = 0;
  while (pos < doc.size()) {
    size_t n = 1;
    switch (chunking) {
      case 0: n = 1 + b1; break;
      case 1: n = 1; break;
      case 2: n = 1 + sizes[k++ % 4]; break;
      case 3: n = doc.size(); break;
    }
    n = std::min(n, doc.size() - pos);
    feed(doc.substr(pos, n));
    pos += n;
  }
  if (chunking == 3) feed({});
  const std::vector<TokenId> tail = st.finish();
  streamed.insert(streamed.end(), tail.begin(), tail.end());

  FUZZ_CHECK(st.bytes_in() == doc.size());
  FUZZ_CHECK(st.replaced_bytes() == replaced);
  FUZZ_CHECK(st.pending_bytes() == 0);
  if (!small_pending) FUZZ_CHECK(st.forced_cuts() == 0);  // 256 KiB: far above any fuzz input
  if (st.forced_cuts() == 0) {
    FUZZ_CHECK(streamed == whole);
  } else {
    check_ids(vocab, streamed, render_special);
  }
  return st.forced_cuts();
}

}  // namespace

#ifndef ILRE_TOKENIZER_FUZZ_SEEDS

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  load_vocabs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)run_one(data, size);  // any exception propagates: libFuzzer reports it as a crash
  return 0;
}

#else  // ILRE_TOKENIZER_FUZZ_SEEDS: write a seed corpus.

#include <fstream>
#include <iostream>

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> texts(const std::string& dir) {
  std::vector<std::string> parts;
  for (const char* v : {"llama-spm", "gpt-2", "llama-bpe"}) {
    const std::string raw = read_file(dir + "/tokenizer/ggml-vocab-" + v + ".gguf.inp");
    const std::string sep = "\n__ggml_vocab_test__\n";
    size_t pos = 0;
    while (pos < raw.size()) {
      size_t next = raw.find(sep, pos);
      if (next == std::string::npos) next = raw.size();
      if (next > pos) parts.push_back(raw.substr(pos, std::min<size_t>(next - pos, 2000)));
      pos = next + sep.size();
    }
  }
  const char* extra[] = {
      "<s>hello</s> <unk> <0x0A> <|endoftext|>a<|endoftext|><|endoftext|>",
      "<start_of_turn>user\nWrite a poem.<end_of_turn>\n",
      "def f(x):\n\tif x:\n\t\treturn [i ** 2 for i in range(x)]\n",
      "                                forty spaces \t\t\t tabs \n\n\n\r\n\r\n",
      "我想在苹果公司工作。 مرحبا بالعالم नमस्ते Привет 👨‍👩‍👧‍👦 🇺🇸 ١٢٣ Ⅷ a\u0301 \u200b\u00a0\u3000",
      "\xff\xfe bad \xc0\xaf overlong \xed\xa0\x80 surrogate \xf4\x90\x80\x80 big \xe2\x82 cut \xf0\x9f\x98",
      "\xe2\x96\x81" "already\xe2\x96\x81" "escaped \xe2\x96\x81 ",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "1234567890 0.5 1,000,000 don't it's we'll I'M",
  };
  for (const char* e : extra) parts.push_back(e);
  return parts;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: tokenizer_fuzz_seeds <corpus-dir>\n";
    return 2;
  }
  load_vocabs();
  const char* env = std::getenv("ILRE_FUZZ_DATA_DIR");
  const std::vector<std::string> parts = texts(env && *env ? env : ILRE_FUZZ_DATA_DIR);
  // Header variants: each text once per vocabulary, rotating options and chunkings over the texts.
  int count = 0;
  for (size_t t = 0; t < parts.size(); ++t) {
    for (uint8_t v = 0; v < 3; ++v) {
      const uint8_t opts = static_cast<uint8_t>((t + v) % 4);          // add_special, parse_special
      const uint8_t chunking = static_cast<uint8_t>((t * 3 + v) % 4);
      const uint8_t small = (t % 5 == 4) ? 1 : 0;
      const uint8_t render = (t % 2);
      const uint8_t b0 = static_cast<uint8_t>(v | opts << 2 | chunking << 4 | small << 6 | render << 7);
      const uint8_t b1 = static_cast<uint8_t>(7 + 13 * t);
      const uint8_t b2 = static_cast<uint8_t>(0x31 + 5 * t);
      std::string input;
      input.push_back(static_cast<char>(b0));
      input.push_back(static_cast<char>(b1));
      input.push_back(static_cast<char>(b2));
      input.push_back(static_cast<char>(t % 3 == 0 ? 1 | (t % 7) << 1 : 0));  // some checkpoint round trips
      input += parts[t];
      (void)run_one(reinterpret_cast<const uint8_t*>(input.data()), input.size());  // traps if the oracle fails
      const std::string path = std::string(argv[1]) + "/seed-" + std::to_string(t) + "-v" + std::to_string(v);
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      f.write(input.data(), static_cast<std::streamsize>(input.size()));
      if (!f) {
        std::cerr << "cannot write " << path << "\n";
        return 1;
      }
      ++count;
    }
  }
  // Checkpoint mode: real checkpoints taken mid-stream (pending text, an incomplete UTF-8 sequence).
  for (size_t t = 0; t < parts.size(); t += 7) {
    for (uint8_t v = 0; v < 3; ++v) {
      StreamingTokenizer st(vocabs()[v], TokenizeOptions{});
      (void)st.feed(std::string_view(parts[t]).substr(0, parts[t].size() / 2));
      (void)st.feed("\xe2\x96");
      const std::vector<uint8_t> blob = st.checkpoint().to_bytes();
      std::string input = {static_cast<char>(3 | (t % 4) << 2), static_cast<char>(v), static_cast<char>(t), 0};
      input.append(blob.begin(), blob.end());
      (void)run_one(reinterpret_cast<const uint8_t*>(input.data()), input.size());
      const std::string path = std::string(argv[1]) + "/checkpoint-" + std::to_string(t) + "-v" + std::to_string(v);
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      f.write(input.data(), static_cast<std::streamsize>(input.size()));
      if (!f) return 1;
      ++count;
    }
  }
  std::cout << count << " seeds in " << argv[1] << "\n";
  return 0;
}

#endif
