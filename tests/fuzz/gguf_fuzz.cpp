// libFuzzer target for the GGUF reader (model/gguf/gguf.cpp).
//
// Every input must either parse or throw ilre::Exception(bad_gguf). Anything else is a finding: a crash,
// a sanitizer report (ASan/UBSan), an uncaught exception of another type, an allocation above -rss_limit_mb /
// -malloc_limit_mb, a timeout, or a violated invariant of a parsed file (checked below; __builtin_trap()).
// On success every tensor's first and last byte is read, the first row of every computable tensor is
// dequantised, and every metadata getter is called on every key.
//
// Built with -DILRE_GGUF_FUZZ_SEEDS (and without -fsanitize=fuzzer) the same file is `gguf_fuzz_seeds`, a
// small program that writes a seed corpus of valid files and a libFuzzer dictionary. See README.md.
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ilre/error.h"
#include "model/gguf/ggml_type.h"
#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "model/kernels/quant.h"

namespace {

using namespace ilre::model;

#define FUZZ_CHECK(cond)    \
  do {                      \
    if (!(cond)) __builtin_trap(); \
  } while (0)

template <class Fn>
void expect_value_or_bad_gguf(Fn&& fn) {
  try {
    fn();
  } catch (const ilre::Exception& e) {
    FUZZ_CHECK(e.code() == ilre::errc::bad_gguf);
  }
}

void exercise(const GgufFile& f, const uint8_t* data, size_t size) {
  volatile uint8_t sink = 0;
  FUZZ_CHECK(f.version() == 2 || f.version() == 3);
  FUZZ_CHECK(f.alignment() != 0 && (f.alignment() & (f.alignment() - 1)) == 0);
  FUZZ_CHECK(f.file_size() == size);
  for (const GgufTensor& t : f.tensors()) {
    // Invariants the model loader and kernels rely on.
    FUZZ_CHECK(t.n_dims >= 1 && t.n_dims <= 4);
    for (int64_t d : t.ne) FUZZ_CHECK(d >= 1);
    FUZZ_CHECK(t.n_bytes > 0);
    FUZZ_CHECK(t.data >= data && t.n_bytes <= size && t.data - data <= static_cast<ptrdiff_t>(size - t.n_bytes));
    FUZZ_CHECK(t.offset % f.alignment() == 0);
    // general.alignment >= 8 and libFuzzer's buffer is heap-aligned: kernels may read f16/f32 in place.
    FUZZ_CHECK((t.data - data) % 8 == 0);
    FUZZ_CHECK(f.find_tensor(t.name) == &t);
    const GgmlTypeInfo& info = ggml_type_info(t.type);
    FUZZ_CHECK(info.block_bytes > 0 && t.ne[0] % info.block_size == 0);
    FUZZ_CHECK(t.row_bytes() * static_cast<size_t>(t.n_rows()) == t.n_bytes);
    FUZZ_CHECK(t.row_bytes() == static_cast<size_t>(t.ne[0] / info.block_size * info.block_bytes));
    sink = sink + t.data[0] + t.data[t.n_bytes - 1];
    (void)t.shape_string();
    if (info.computable) {
      std::vector<float> row(static_cast<size_t>(t.ne[0]));
      dequantize_row(t.type, t.data, row.data(), t.ne[0]);
      sink = sink + static_cast<uint8_t>(row.back() == 0.0f);
    }
  }
  for (const auto& entry : f.metadata()) {
    const std::string& key = entry.first;  // not a structured binding: clang 14 cannot capture those
    const GgufValue& value = entry.second;
    FUZZ_CHECK(!key.empty());
    FUZZ_CHECK(f.find(key) == &value);
    (void)value.describe();
    (void)value.size();
    expect_value_or_bad_gguf([&] { (void)f.get_int(key); });
    expect_value_or_bad_gguf([&] { (void)f.require_int(key); });
    expect_value_or_bad_gguf([&] { (void)f.get_float(key); });
    expect_value_or_bad_gguf([&] { (void)f.require_float(key); });
    expect_value_or_bad_gguf([&] { (void)f.get_bool(key); });
    expect_value_or_bad_gguf([&] { (void)f.get_string(key); });
    expect_value_or_bad_gguf([&] { (void)f.require_string(key); });
    expect_value_or_bad_gguf([&] { (void)f.get_string_array(key); });
    expect_value_or_bad_gguf([&] { (void)f.get_float_array(key); });
    expect_value_or_bad_gguf([&] { (void)f.get_int_array(key); });
  }
  expect_value_or_bad_gguf([&] { (void)f.tensor("token_embd.weight"); });
}

}  // namespace

#ifndef ILRE_GGUF_FUZZ_SEEDS

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<const GgufFile> f;
  try {
    f = GgufFile::parse(std::span<const uint8_t>(data, size), "fuzz.gguf");
  } catch (const ilre::Exception& e) {
    FUZZ_CHECK(e.code() == ilre::errc::bad_gguf);
    FUZZ_CHECK(std::strstr(e.what(), "fuzz.gguf") != nullptr);  // errors name the file
    return 0;
  }
  // Any other exception type propagates out of here and libFuzzer reports it as a crash.
  exercise(*f, data, size);
  return 0;
}

#else  // ILRE_GGUF_FUZZ_SEEDS: write a seed corpus and a dictionary.

#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>

namespace {

using Bytes = std::vector<uint8_t>;

struct Enc {
  Bytes b;
  template <class T>
  Enc& put(T v) {
    const size_t at = b.size();
    b.resize(at + sizeof(T));
    std::memcpy(b.data() + at, &v, sizeof(T));
    return *this;
  }
  Enc& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Enc& kv(const std::string& key, GgufValueType t) { return str(key).put<uint32_t>(static_cast<uint32_t>(t)); }
  Enc& arr(GgufValueType elem, uint64_t n) { return put<uint32_t>(static_cast<uint32_t>(elem)).put<uint64_t>(n); }
};

// Every value type and nested arrays, two tensors; the writer cannot express these.
Bytes all_value_types(uint32_t version) {
  using VT = GgufValueType;
  Enc e;
  e.put<uint32_t>(0x46554747).put<uint32_t>(version).put<uint64_t>(2).put<uint64_t>(17);
  e.kv("general.architecture", VT::STRING).str("llama");
  e.kv("a.u8", VT::U8).put<uint8_t>(200);
  e.kv("a.i8", VT::I8).put<int8_t>(-3);
  e.kv("a.u16", VT::U16).put<uint16_t>(60000);
  e.kv("a.i16", VT::I16).put<int16_t>(-300);
  e.kv("a.u32", VT::U32).put<uint32_t>(70000);
  e.kv("a.i32", VT::I32).put<int32_t>(-70000);
  e.kv("a.f32", VT::F32).put<float>(0.5f);
  e.kv("a.bool", VT::BOOL).put<uint8_t>(1);
  e.kv("a.u64", VT::U64).put<uint64_t>(1ull << 40);
  e.kv("a.i64", VT::I64).put<int64_t>(-(1ll << 40));
  e.kv("a.f64", VT::F64).put<double>(2.5);
  e.kv("a.strs", VT::ARRAY).arr(VT::STRING, 3).str("<s>").str("").str("x");
  e.kv("a.u8s", VT::ARRAY).arr(VT::U8, 2).put<uint8_t>(1).put<uint8_t>(2);
  e.kv("a.f64s", VT::ARRAY).arr(VT::F64, 1).put<double>(1.0);
  e.kv("a.bools", VT::ARRAY).arr(VT::BOOL, 2).put<uint8_t>(0).put<uint8_t>(1);
  e.kv("a.nested", VT::ARRAY).arr(VT::ARRAY, 2);
  e.arr(VT::I32, 2).put<int32_t>(1).put<int32_t>(2);
  e.arr(VT::ARRAY, 1).arr(VT::U16, 1).put<uint16_t>(9);
  // Tensors: F16 [16] at 0, Q4_K [256] at 32.
  e.str("t.f16").put<uint32_t>(1).put<uint64_t>(16).put<uint32_t>(1).put<uint64_t>(0);
  e.str("t.q4k").put<uint32_t>(2).put<uint64_t>(256).put<uint64_t>(1).put<uint32_t>(12).put<uint64_t>(32);
  e.b.resize((e.b.size() + 31) / 32 * 32, 0);
  for (int i = 0; i < 32 + 144; ++i) e.b.push_back(static_cast<uint8_t>(i * 37));
  return e.b;
}

GgufWriter writer_sample(uint32_t alignment) {
  GgufWriter w(alignment);
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "seed");
  w.set_u32("llama.block_count", 1);
  w.set_i32("x.i32", -1);
  w.set_u64("x.u64", 1ull << 33);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_bool("x.bool", false);
  w.set_strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "b"});
  w.set_f32s("tokenizer.ggml.scores", {0, 0, 0, -1, -2});
  w.set_i32s("tokenizer.ggml.token_type", {2, 3, 3, 1, 1});
  std::vector<float> x(32);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i);
  w.add_f32_tensor("token_embd.weight", {8, 4}, x);
  std::vector<uint8_t> q8(34 * 2, 0x11);
  w.add_tensor("blk.0.attn_q.weight", GgmlType::Q8_0, {32, 2}, q8);
  return w;
}

// One quantised row of every computable type, from real values so the scales are sensible.
GgufWriter every_computable_type() {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (uint32_t id = 0; id < 64; ++id) {
    const std::optional<GgmlTypeInfo> info = ggml_type_info(id);
    if (!info || !info->computable) continue;
    const int64_t n = info->block_size == 1 ? 8 : info->block_size;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& f : v) f = d(rng);
    std::vector<uint8_t> bytes(*ggml_row_bytes(info->type, n));
    quantize_row_reference(info->type, v.data(), bytes.data(), n);
    w.add_tensor("t." + std::string(info->name), info->type, {n}, bytes);
  }
  return w;
}

bool write_file(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: gguf_fuzz_seeds <corpus-dir> [dictionary-file]\n";
    return 2;
  }
  const std::string dir = argv[1];
  std::vector<std::pair<std::string, Bytes>> seeds = {
      {"writer-align32.gguf", writer_sample(32).to_bytes()},
      {"writer-align64.gguf", writer_sample(64).to_bytes()},
      {"all-value-types-v3.gguf", all_value_types(3)},
      {"all-value-types-v2.gguf", all_value_types(2)},
      {"every-computable-type.gguf", every_computable_type().to_bytes()},
      {"metadata-only.gguf", [] {
         GgufWriter w;
         w.set_string("general.architecture", "llama");
         w.set_u32("general.alignment", 64);
         return w.to_bytes();
       }()},
  };
  for (const auto& [name, bytes] : seeds) {
    // Each seed must itself be valid, or the corpus is not what it claims.
    try {
      auto f = GgufFile::parse(bytes, name);
      exercise(*f, bytes.data(), bytes.size());
    } catch (const std::exception& e) {
      std::cerr << name << ": " << e.what() << "\n";
      return 1;
    }
    if (!write_file(dir + "/" + name, bytes)) {
      std::cerr << "cannot write " << dir << "/" << name << "\n";
      return 1;
    }
    std::cout << dir << "/" << name << " (" << bytes.size() << " bytes)\n";
  }
  if (argc >= 3) {
    std::ofstream dict(argv[2], std::ios::trunc);
    dict << "magic=\"GGUF\"\n"
            "v3=\"\\x03\\x00\\x00\\x00\"\n"
            "v2=\"\\x02\\x00\\x00\\x00\"\n"
            "u64_max=\"\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\"\n"
            "u64_2p63=\"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x80\"\n"
            "u64_2p32=\"\\x00\\x00\\x00\\x00\\x01\\x00\\x00\\x00\"\n"
            "type_array=\"\\x09\\x00\\x00\\x00\"\n"
            "type_string=\"\\x08\\x00\\x00\\x00\"\n"
            "type_bool=\"\\x07\\x00\\x00\\x00\"\n"
            "type_f64=\"\\x0c\\x00\\x00\\x00\"\n"
            "key_alignment=\"\\x11\\x00\\x00\\x00\\x00\\x00\\x00\\x00general.alignment\"\n"
            "align_1=\"\\x01\\x00\\x00\\x00\"\n"
            "align_64=\"\\x40\\x00\\x00\\x00\"\n"
            "ggml_q4_k=\"\\x0c\\x00\\x00\\x00\"\n"
            "ggml_iq2_xxs=\"\\x10\\x00\\x00\\x00\"\n"
            "ggml_bf16=\"\\x1e\\x00\\x00\\x00\"\n";
    std::cout << argv[2] << "\n";
  }
  return 0;
}

#endif
