#include "support/tiny_model.h"

#include <random>
#include <vector>

#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "model/kernels/quant.h"
#include "support/paths.h"

namespace ilre::test {
namespace {

using model::GgmlType;

void copy_vocab(const model::GgufFile& src, model::GgufWriter& w) {
  w.set_string("tokenizer.ggml.model", src.require_string("tokenizer.ggml.model"));
  w.set_strings("tokenizer.ggml.tokens", *src.get_string_array("tokenizer.ggml.tokens"));
  // Keep the optionals alive: a range-for over *temporary would dangle (C++20 does not extend its life).
  const std::vector<double> raw_scores = src.get_float_array("tokenizer.ggml.scores").value();
  const std::vector<int64_t> raw_types = src.get_int_array("tokenizer.ggml.token_type").value();
  const std::vector<float> scores(raw_scores.begin(), raw_scores.end());
  w.set_f32s("tokenizer.ggml.scores", scores);
  std::vector<int32_t> types;
  for (int64_t t : raw_types) types.push_back(static_cast<int32_t>(t));
  w.set_i32s("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(src.require_int("tokenizer.ggml.bos_token_id")));
  w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(src.require_int("tokenizer.ggml.eos_token_id")));
  w.set_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(src.require_int("tokenizer.ggml.unknown_token_id")));
}

class Writer {
 public:
  Writer(model::GgufWriter& w, uint64_t seed, GgmlType type) : w_(w), rng_(seed), type_(type) {}

  void matrix(const std::string& name, int64_t n_in, int64_t n_out, float scale) {
    std::vector<float> v = random(n_in * n_out, scale);
    const size_t row = *model::ggml_row_bytes(type_, n_in);
    std::vector<uint8_t> bytes(row * static_cast<size_t>(n_out));
    for (int64_t r = 0; r < n_out; ++r) {
      model::quantize_row_reference(type_, v.data() + r * n_in, bytes.data() + static_cast<size_t>(r) * row, n_in);
    }
    w_.add_tensor(name, type_, {n_in, n_out}, bytes);
  }
  void norm(const std::string& name, int64_t n, float center) {
    std::vector<float> v = random(n, 0.1f);
    for (float& x : v) x += center;
    w_.add_f32_tensor(name, {n}, v);
  }

 private:
  std::vector<float> random(int64_t n, float scale) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = d(rng_);
    return v;
  }
  model::GgufWriter& w_;
  std::mt19937_64 rng_;
  GgmlType type_;
};

}  // namespace

std::string write_tiny_model(const std::string& dir, const TinyModelSpec& s) {
  auto vocab_src = model::GgufFile::open(data_model("stories260K-f32.gguf"));
  const int64_t n_vocab = static_cast<int64_t>(vocab_src->get_string_array("tokenizer.ggml.tokens")->size());
  model::GgufWriter w;
  const std::string& a = s.arch;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "tiny-" + a);
  w.set_u32(a + ".context_length", static_cast<uint32_t>(s.n_ctx));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(s.n_embd));
  w.set_u32(a + ".block_count", static_cast<uint32_t>(s.n_layer));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(s.n_head));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
  w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(s.head_dim));
  w.set_u32(a + ".attention.value_length", static_cast<uint32_t>(s.head_dim));
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_f32(a + ".rope.freq_base", a == "gemma3" ? 1e6f : 10000.0f);
  if (a == "llama") w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(s.head_dim));
  if (a == "gemma3" && s.sliding_window > 0) w.set_u32(a + ".attention.sliding_window", static_cast<uint32_t>(s.sliding_window));
  copy_vocab(*vocab_src, w);

  Writer t(w, s.seed, s.weight_type);
  const float ws = 1.0f / std::sqrt(static_cast<float>(s.n_embd));
  t.matrix("token_embd.weight", s.n_embd, n_vocab, 1.0f);
  t.norm("output_norm.weight", s.n_embd, 1.0f);
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    t.norm(p + "attn_norm.weight", s.n_embd, 1.0f);
    t.matrix(p + "attn_q.weight", s.n_embd, s.n_head * s.head_dim, ws);
    t.matrix(p + "attn_k.weight", s.n_embd, s.n_head_kv * s.head_dim, ws);
    t.matrix(p + "attn_v.weight", s.n_embd, s.n_head_kv * s.head_dim, ws);
    t.matrix(p + "attn_output.weight", s.n_head * s.head_dim, s.n_embd, ws);
    t.norm(p + "ffn_norm.weight", s.n_embd, 1.0f);
    t.matrix(p + "ffn_gate.weight", s.n_embd, s.n_ff, ws);
    t.matrix(p + "ffn_up.weight", s.n_embd, s.n_ff, ws);
    t.matrix(p + "ffn_down.weight", s.n_ff, s.n_embd, 1.0f / std::sqrt(static_cast<float>(s.n_ff)));
    if (a == "gemma3") {
      t.norm(p + "attn_q_norm.weight", s.head_dim, 1.0f);
      t.norm(p + "attn_k_norm.weight", s.head_dim, 1.0f);
      t.norm(p + "post_attention_norm.weight", s.n_embd, 1.0f);
      t.norm(p + "post_ffw_norm.weight", s.n_embd, 1.0f);
    }
  }
  const std::string path = dir + "/tiny-" + a + "-" + std::string(model::ggml_type_name(s.weight_type)) + ".gguf";
  w.write(path);
  return path;
}

}  // namespace ilre::test
