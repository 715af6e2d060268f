// Model::load on files that are valid GGUF but not a usable model (wrong architecture, missing or misshapen
// tensors, unsupported weight types, broken hyper-parameters, no tokenizer) and on paths that are not
// model files at all. Each must fail with the right error code and a message naming the culprit.
//
// The tiny models are written here (not with tests/support/tiny_model) so each test can break exactly one
// thing: TinySpec starts from a model that loads and every knob spoils one aspect of it.
#include "model/model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ilre/error.h"
#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

// tokenizer.ggml.* of stories260K (512-token SentencePiece vocabulary), read once.
struct VocabSource {
  std::string model;
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> token_types;
  uint32_t bos = 0, eos = 0, unk = 0;
  std::optional<bool> add_bos;
};

const VocabSource& vocab_source() {
  static const VocabSource src = [] {
    auto f = GgufFile::open(test::data_model("stories260K-f32.gguf"));
    VocabSource v;
    v.model = f->require_string("tokenizer.ggml.model");
    v.tokens = *f->get_string_array("tokenizer.ggml.tokens");
    // Keep the optionals alive: `for (x : *f->get_float_array(..))` would iterate a destroyed temporary.
    const std::optional<std::vector<double>> scores = f->get_float_array("tokenizer.ggml.scores");
    const std::optional<std::vector<int64_t>> types = f->get_int_array("tokenizer.ggml.token_type");
    for (double s : scores.value()) v.scores.push_back(static_cast<float>(s));
    for (int64_t t : types.value()) v.token_types.push_back(static_cast<int32_t>(t));
    v.bos = static_cast<uint32_t>(f->require_int("tokenizer.ggml.bos_token_id"));
    v.eos = static_cast<uint32_t>(f->require_int("tokenizer.ggml.eos_token_id"));
    v.unk = static_cast<uint32_t>(f->require_int("tokenizer.ggml.unknown_token_id"));
    v.add_bos = f->get_bool("tokenizer.ggml.add_bos_token");
    return v;
  }();
  return src;
}

struct TinySpec {
  std::string arch = "llama";
  int64_t n_embd = 32;
  int64_t n_layer = 2;
  uint32_t n_head = 4;
  uint32_t n_head_kv = 2;
  int64_t n_ff = 64;
  bool tokenizer = true;        // write tokenizer.ggml.*
  bool tokenizer_model = true;  // write tokenizer.ggml.model (with the rest of the tokenizer)
  std::optional<uint32_t> vocab_size;  // write <arch>.vocab_size
  std::string omit_tensor;             // leave this tensor out
  std::string transpose_tensor;        // write this 2-D tensor as [n_out, n_in]
  std::map<std::string, std::vector<int64_t>> shape_override;
  std::string iq2_tensor;              // write this 2-D tensor as IQ2_XXS (correctly sized random bytes)
};

int64_t n_vocab() { return static_cast<int64_t>(vocab_source().tokens.size()); }

// Writes a 'llama'-layout model with random F32 weights into dir and returns its path.
std::string write_tiny(const std::string& dir, const TinySpec& s, const std::string& file = "tiny.gguf") {
  const VocabSource& v = vocab_source();
  GgufWriter w;
  const std::string& a = s.arch;
  const int64_t head_dim = s.n_embd / s.n_head;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "tiny-errors");
  w.set_u32(a + ".context_length", 256);
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(s.n_embd));
  w.set_u32(a + ".block_count", static_cast<uint32_t>(s.n_layer));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff));
  w.set_u32(a + ".attention.head_count", s.n_head);
  w.set_u32(a + ".attention.head_count_kv", s.n_head_kv);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32(a + ".rope.freq_base", 10000.0f);
  w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(head_dim));
  if (s.vocab_size) w.set_u32(a + ".vocab_size", *s.vocab_size);
  if (s.tokenizer) {
    if (s.tokenizer_model) w.set_string("tokenizer.ggml.model", v.model);
    w.set_strings("tokenizer.ggml.tokens", v.tokens);
    w.set_f32s("tokenizer.ggml.scores", v.scores);
    w.set_i32s("tokenizer.ggml.token_type", v.token_types);
    w.set_u32("tokenizer.ggml.bos_token_id", v.bos);
    w.set_u32("tokenizer.ggml.eos_token_id", v.eos);
    w.set_u32("tokenizer.ggml.unknown_token_id", v.unk);
    if (v.add_bos) w.set_bool("tokenizer.ggml.add_bos_token", *v.add_bos);
  }

  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    if (name == s.omit_tensor) return;
    if (name == s.transpose_tensor && shape.size() == 2) std::swap(shape[0], shape[1]);
    if (auto it = s.shape_override.find(name); it != s.shape_override.end()) shape = it->second;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (name == s.iq2_tensor) {
      const size_t bytes = *ggml_row_bytes(GgmlType::IQ2_XXS, shape[0]) * static_cast<size_t>(n / shape[0]);
      std::vector<uint8_t> data(bytes);
      for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
      w.add_tensor(name, GgmlType::IQ2_XXS, shape, data);
      return;
    }
    std::vector<float> data(static_cast<size_t>(n));
    for (float& x : data) x = dist(rng);
    if (shape.size() == 1) {
      for (float& x : data) x += 1.0f;  // norm weights near one
    }
    w.add_f32_tensor(name, shape, data);
  };

  // At least one KV head's worth of columns, so a head_count_kv of 0 is caught by the hyper-parameter
  // check rather than by the GGUF reader's zero-dimension check.
  const int64_t q = s.n_head * head_dim, kv = std::max<int64_t>(s.n_head_kv, 1) * head_dim;
  add("token_embd.weight", {s.n_embd, n_vocab()});
  add("output_norm.weight", {s.n_embd});
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    add(p + "attn_norm.weight", {s.n_embd});
    add(p + "attn_q.weight", {s.n_embd, q});
    add(p + "attn_k.weight", {s.n_embd, kv});
    add(p + "attn_v.weight", {s.n_embd, kv});
    add(p + "attn_output.weight", {q, s.n_embd});
    add(p + "ffn_norm.weight", {s.n_embd});
    add(p + "ffn_gate.weight", {s.n_embd, s.n_ff});
    add(p + "ffn_up.weight", {s.n_embd, s.n_ff});
    add(p + "ffn_down.weight", {s.n_ff, s.n_embd});
  }
  const std::string path = dir + "/" + file;
  w.write(path);
  return path;
}

// Loads and expects an Exception with this code whose message contains every needle.
::testing::AssertionResult load_fails(const std::string& path, errc code, std::vector<std::string> needles) {
  try {
    auto m = Model::load(path);
    return ::testing::AssertionFailure() << "Model::load succeeded on " << path;
  } catch (const Exception& e) {
    const std::string msg = e.what();
    if (e.code() != code) return ::testing::AssertionFailure() << "wrong code " << errc_name(e.code()) << ": " << msg;
    for (const std::string& n : needles) {
      if (msg.find(n) == std::string::npos) return ::testing::AssertionFailure() << "message lacks \"" << n << "\": " << msg;
    }
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "non-ilre exception: " << e.what();
  }
}

class ModelLoadErrors : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::scratch_dir("model-load-errors"); }
  std::string write(const TinySpec& s, const std::string& file = "tiny.gguf") { return write_tiny(dir_, s, file); }
  std::string dir_;
};

TEST_F(ModelLoadErrors, ValidTinyModelLoads) {
  const std::string path = write(TinySpec{});
  auto m = Model::load(path);
  const HParams& hp = m->hparams();
  EXPECT_EQ(hp.arch, Arch::llama);
  EXPECT_EQ(hp.n_embd, 32);
  EXPECT_EQ(hp.n_layer, 2);
  EXPECT_EQ(hp.n_head, 4);
  EXPECT_EQ(hp.n_head_kv, 2);
  EXPECT_EQ(hp.head_dim_k, 8);
  EXPECT_EQ(hp.n_ff, 64);
  EXPECT_EQ(hp.n_vocab, n_vocab());
  EXPECT_EQ(m->vocab().n_tokens(), n_vocab());
  EXPECT_EQ(m->layer(1).wk.n_out, 16);
  EXPECT_EQ(m->name(), "tiny-errors");
  // Tied output: no output.weight, so it reuses token_embd.
  EXPECT_EQ(m->output().data, m->token_embd().data);

  // The IQ2 variant's geometry (n_ff a multiple of 256) loads too when the weight is F32.
  TinySpec wide;
  wide.n_ff = 256;
  EXPECT_NO_THROW(Model::load(write(wide, "wide.gguf")));
}

TEST_F(ModelLoadErrors, UnsupportedArchitecture) {
  TinySpec s;
  s.arch = "mamba";
  EXPECT_TRUE(load_fails(write(s), errc::unsupported,
                         {"architecture 'mamba' is not supported", "(llama, qwen2, qwen3, gemma3, phi3)"}));
  s.arch = "";
  EXPECT_TRUE(load_fails(write(s, "empty-arch.gguf"), errc::unsupported, {"architecture '' is not supported"}));
}

TEST_F(ModelLoadErrors, Phi3Layout) {
  // phi3 keeps gate and up in one ffn_up of 2*n_ff rows: a llama-style ffn_up is refused by its shape.
  TinySpec s;
  s.arch = "phi3";
  EXPECT_TRUE(load_fails(write(s), errc::bad_gguf, {"'blk.0.ffn_up.weight' has shape [32, 64], expected [32, 128]"}));
  for (const char* name : {"blk.0.ffn_up.weight", "blk.1.ffn_up.weight"}) s.shape_override[name] = {32, 128};
  auto m = Model::load(write(s, "phi3.gguf"));  // separate attn_q/k/v, fused gate/up
  EXPECT_EQ(m->hparams().arch, Arch::phi3);
  EXPECT_EQ(m->layer(1).up.n_out, 64);
  EXPECT_EQ(m->layer(1).up.data, m->layer(1).gate.data + 64 * m->layer(1).gate.row_bytes);
  // Neither the fused attn_qkv nor the separate projections: the message names both.
  TinySpec t = s;
  t.omit_tensor = "blk.1.attn_q.weight";
  EXPECT_TRUE(load_fails(write(t, "phi3-no-q.gguf"), errc::bad_gguf,
                         {"required tensor 'blk.1.attn_qkv.weight' (or blk.1.attn_q/k/v.weight) is missing"}));
}

TEST_F(ModelLoadErrors, MissingArchitectureKey) {
  // An otherwise valid GGUF without general.architecture.
  GgufWriter w;
  w.set_string("general.name", "x");
  std::vector<float> d(32, 1.0f);
  w.add_f32_tensor("token_embd.weight", {32}, d);
  const std::string path = dir_ + "/noarch.gguf";
  w.write(path);
  EXPECT_TRUE(load_fails(path, errc::bad_gguf, {"required key 'general.architecture' is missing"}));
}

TEST_F(ModelLoadErrors, MissingRequiredTensor) {
  for (const std::string name : {"token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight",
                                 "blk.1.ffn_down.weight", "blk.1.attn_norm.weight"}) {
    TinySpec s;
    s.omit_tensor = name;
    EXPECT_TRUE(load_fails(write(s), errc::bad_gguf, {"required tensor '" + name + "' is missing"})) << name;
  }
}

TEST_F(ModelLoadErrors, WrongTensorShape) {
  TinySpec s;
  s.transpose_tensor = "blk.0.attn_k.weight";
  EXPECT_TRUE(load_fails(write(s), errc::bad_gguf,
                         {"tensor 'blk.0.attn_k.weight' has shape [16, 32], expected [32, 16]"}));
  TinySpec t;
  t.shape_override["blk.1.ffn_up.weight"] = {32, 64, 1};  // right elements, wrong rank
  EXPECT_TRUE(load_fails(write(t), errc::bad_gguf, {"'blk.1.ffn_up.weight' has shape [32, 64, 1], expected [32, 64]"}));
  TinySpec u;
  u.shape_override["output_norm.weight"] = {16};
  EXPECT_TRUE(load_fails(write(u), errc::bad_gguf, {"'output_norm.weight' has shape [16], expected [32]"}));
  TinySpec v;
  v.shape_override["token_embd.weight"] = {32, 500};
  EXPECT_TRUE(load_fails(write(v), errc::bad_gguf, {"'token_embd.weight' has shape [32, 500], expected [32, 512]"}));
}

TEST_F(ModelLoadErrors, UnsupportedWeightType) {
  TinySpec s;
  s.n_ff = 256;  // IQ2_XXS blocks are 256 wide: ffn_down's rows are n_ff long
  s.iq2_tensor = "blk.1.ffn_down.weight";
  EXPECT_TRUE(load_fails(write(s), errc::unsupported,
                         {"tensor 'blk.1.ffn_down.weight'", "iq2_xxs", "cannot compute"}));
}

TEST_F(ModelLoadErrors, MissingTokenizer) {
  TinySpec s;
  s.tokenizer = false;
  EXPECT_TRUE(load_fails(write(s), errc::bad_gguf, {"tokenizer.ggml.tokens"}));
  // With the vocabulary size known from the hyper-parameters, the vocabulary itself is what is missing.
  s.vocab_size = static_cast<uint32_t>(n_vocab());
  EXPECT_TRUE(load_fails(write(s, "vocab-size.gguf"), errc::bad_gguf, {"tokenizer.ggml.model is missing"}));
  TinySpec t;
  t.tokenizer_model = false;
  EXPECT_TRUE(load_fails(write(t, "no-model.gguf"), errc::bad_gguf, {"tokenizer.ggml.model is missing"}));
}

TEST_F(ModelLoadErrors, VocabularySizeMismatch) {
  TinySpec s;
  s.vocab_size = 600;
  EXPECT_TRUE(load_fails(write(s), errc::bad_gguf, {"vocabulary has 512 tokens but the model expects 600"}));
}

TEST_F(ModelLoadErrors, HeadCountNotMultipleOfKvHeads) {
  TinySpec s;
  s.n_head_kv = 3;
  EXPECT_TRUE(load_fails(write(s), errc::bad_gguf, {"head_count 4 is not a multiple of head_count_kv 3"}));
  s.n_head_kv = 0;
  EXPECT_TRUE(load_fails(write(s, "zero-kv.gguf"), errc::bad_gguf, {"head_count_kv", "out of range"}));
}

TEST_F(ModelLoadErrors, NonexistentPath) {
  const std::string path = dir_ + "/does-not-exist.gguf";
  EXPECT_TRUE(load_fails(path, errc::io_failed, {"cannot open model", "does-not-exist.gguf"}));
}

TEST_F(ModelLoadErrors, DirectoryPath) {
  EXPECT_TRUE(load_fails(dir_, errc::io_failed, {"is not a regular file"}));
}

TEST_F(ModelLoadErrors, EmptyFile) {
  const std::string path = dir_ + "/empty.gguf";
  { std::ofstream f(path, std::ios::binary); }
  EXPECT_TRUE(load_fails(path, errc::bad_gguf, {"file is empty", "empty.gguf"}));
}

TEST_F(ModelLoadErrors, NotGgufAndTruncatedFiles) {
  const std::string text = dir_ + "/notes.gguf";
  {
    std::ofstream f(text, std::ios::binary);
    f << "this is a text file, not a model\n";
  }
  EXPECT_TRUE(load_fails(text, errc::bad_gguf, {"not a GGUF file"}));

  // A valid model cut in half (through the mmap path).
  const std::string full = write(TinySpec{}, "full.gguf");
  std::vector<char> bytes;
  {
    std::ifstream in(full, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_GT(bytes.size(), 1000u);
  const std::string half = dir_ + "/half.gguf";
  {
    std::ofstream out(half, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  EXPECT_TRUE(load_fails(half, errc::bad_gguf, {"half.gguf", "truncated"}));
}

}  // namespace
}  // namespace ilre::model
