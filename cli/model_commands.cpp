// info, tokenize, generate, logits: thin clients of the model library.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "commands.h"
#include "ilre/error.h"
#include "model/tokenizer/chat_template.h"
#include "model/kernels/ggml_cpu.h"
#include "model/dca.h"
#include "model/model.h"
#include "model/gguf/model_path.h"
#include "model/kernels/quant_kernels.h"
#include "model/session.h"

namespace ilre::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct ModelArgs {
  std::optional<std::string> model;
  int threads = 0;
};

void add_model_args(CLI::App* cmd, ModelArgs& a) {
  cmd->add_option("-m,--model", a.model, "GGUF file or name (default: $ILRE_MODEL, then models/, tests/data/models/)");
  cmd->add_option("-t,--threads", a.threads, "compute threads (default: all cores)");
}

// How the forward pass rounds: the same two settings as the config's decode.numerics and decode.kv_type.
struct NumericsArgs {
  std::string numerics = "llama_cpp";
  std::string kv_type = "f16";

  model::Numerics mode() const { return *model::numerics_from_name(numerics); }
  model::KvType cache() const { return *model::kv_type_from_name(kv_type); }
};

void add_numerics_args(CLI::App* cmd, NumericsArgs& a) {
  cmd->add_option("--numerics", a.numerics, "llama_cpp (round as llama.cpp's CPU backend) or exact (F32, F32 cache)")
      ->check(CLI::IsMember({"llama_cpp", "exact"}))
      ->capture_default_str();
  cmd->add_option("--kv-type", a.kv_type, "K/V cache type with llama_cpp numerics: f16 (llama.cpp's default) or f32")
      ->check(CLI::IsMember({"f16", "f32"}))
      ->capture_default_str();
}

std::shared_ptr<const model::Model> load(const ModelArgs& a) {
  const std::string path = model::resolve_model_path(a.model);
  spdlog::info("loading {}", path);
  return model::Model::load(path);
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Writes generated text as complete UTF-8 characters only: a multi-byte character may span two tokens.
class Utf8Printer {
 public:
  void write(const std::string& bytes) {
    pending_ += bytes;
    size_t complete = pending_.size();
    // Hold back a trailing incomplete sequence (at most 3 bytes).
    for (size_t back = 1; back <= 3 && back <= pending_.size(); ++back) {
      const auto c = static_cast<unsigned char>(pending_[pending_.size() - back]);
      if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead byte
      const size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (len > back) complete = pending_.size() - back;
      break;
    }
    std::fwrite(pending_.data(), 1, complete, stdout);
    std::fflush(stdout);
    pending_.erase(0, complete);
  }
  void flush() {
    std::fwrite(pending_.data(), 1, pending_.size(), stdout);
    pending_.clear();
    std::fflush(stdout);
  }

 private:
  std::string pending_;
};

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print a model's architecture, vocabulary and tensor summary");
  auto a = std::make_shared<ModelArgs>();
  add_model_args(cmd, *a);
  cmd->callback([a] {
    auto m = load(*a);
    const auto& hp = m->hparams();
    nlohmann::json j;
    j["path"] = m->path();
    j["name"] = m->name();
    j["architecture"] = hp.arch_name;
    j["summary"] = hp.summary();
    j["fingerprint"] = m->fingerprint();
    // What decode.dca (auto: for sequences past the trained context) would cut the final pass into.
    const model::Dca dca = model::Dca::for_context(hp.n_ctx_train);
    j["dca"] = {{"trained_context", hp.n_ctx_train}, {"chunk", dca.chunk}, {"local", dca.local},
                {"layers", hp.sliding_window > 0 ? "full-attention layers only" : "every layer"}};
    j["n_tensors"] = m->file().tensors().size();
    j["bos"] = m->vocab().bos();
    j["eos"] = m->vocab().eos();
    j["add_bos"] = m->vocab().add_bos();
    // Chosen at start-up for this CPU (model/kernels/quant_kernels.h, model/kernels/ggml_cpu.h).
    const model::GgmlCpu& ggml = model::ggml_cpu();
    j["kernels"] = {{"quantised", model::kernels::kernel_isa_name(model::kernels::kernel_isa())},
                    {"llama_cpp_float_lanes", ggml.float_lanes},
                    {"llama_cpp_exp", ggml.exp_avx512 ? "avx512" : (ggml.exp_vector ? "avx2" : "libm")},
                    {"build_baseline", model::kernels::build_baseline()}};
    std::cout << j.dump(2) << "\n";
  });
}

void register_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  auto a = std::make_shared<ModelArgs>();
  auto text = std::make_shared<std::string>();
  auto no_bos = std::make_shared<bool>(false);
  auto parse_special = std::make_shared<bool>(false);
  add_model_args(cmd, *a);
  cmd->add_option("--text", *text, "text to tokenize")->required();
  cmd->add_flag("--no-bos", *no_bos, "do not add BOS/EOS even if the model's metadata asks for them");
  cmd->add_flag("--parse-special", *parse_special, "treat special-token text such as </s> as those tokens");
  cmd->callback([=] {
    // Only the vocabulary is read, so vocabulary-only GGUF files (llama.cpp's ggml-vocab-*.gguf) work too.
    const std::string path = model::resolve_model_path(a->model);
    const auto file = model::GgufFile::open(path);
    const auto vocab = model::Vocab::from_gguf(*file);
    const auto ids = vocab->tokenize(*text, {.add_special = !*no_bos, .parse_special = *parse_special});
    std::cout << nlohmann::json(ids).dump() << "\n";
  });
}

struct PromptArgs {
  std::string prompt;
  bool chat = false;
  std::string system;
};

std::vector<model::TokenId> prompt_tokens(const model::Model& m, const PromptArgs& p) {
  if (!p.chat) return m.vocab().tokenize(p.prompt, {.add_special = true, .parse_special = false});
  const model::ChatTemplate tmpl = model::chat_template_for(m.file(), m.hparams());
  if (!tmpl.from_metadata) spdlog::info("model has no chat template; using the {} format", m.hparams().arch_name);
  std::vector<model::ChatMessage> msgs;
  if (!p.system.empty()) msgs.push_back({"system", p.system});
  msgs.push_back({"user", p.prompt});
  return m.vocab().tokenize(tmpl.apply(msgs), {.add_special = true, .parse_special = true});
}

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Continue a prompt (or answer it with --chat)");
  auto a = std::make_shared<ModelArgs>();
  auto p = std::make_shared<PromptArgs>();
  auto n = std::make_shared<int>(64);
  auto sp = std::make_shared<model::SamplerParams>();
  auto num = std::make_shared<NumericsArgs>();
  sp->temperature = 0.8f;
  add_model_args(cmd, *a);
  add_numerics_args(cmd, *num);
  cmd->add_option("-p,--prompt", p->prompt, "prompt text")->required();
  cmd->add_option("-n,--n-predict", *n, "maximum tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temp", sp->temperature, "temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", sp->top_k, "top-k cut (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", sp->top_p, "nucleus cut (1 = off)")->capture_default_str();
  cmd->add_option("--seed", sp->seed, "sampling seed")->capture_default_str();
  cmd->add_flag("--chat", p->chat, "wrap the prompt in the model's chat template");
  cmd->add_option("--system", p->system, "system message (with --chat)");
  cmd->callback([=] {
    auto m = load(*a);
    model::ComputePool pool(a->threads);
    const auto tokens = prompt_tokens(*m, *p);
    model::Session session(*m, pool, 512, num->mode(), num->cache());
    Utf8Printer out;
    if (!p->chat) out.write(p->prompt);
    auto t0 = Clock::now();
    std::vector<float> logits;
    session.eval(tokens, logits);
    const double t_prompt = seconds_since(t0);
    t0 = Clock::now();
    model::GenerateOptions opt;
    opt.max_tokens = *n;
    opt.sampler = *sp;
    opt.on_token = [&](model::TokenId id) {
      out.write(m->vocab().token_to_piece(id));
      return true;
    };
    const auto gen = session.generate({}, opt);
    out.flush();
    std::fputs("\n", stdout);
    const double t_gen = seconds_since(t0);
    spdlog::info("prompt: {} tokens in {:.2f} s ({:.1f} tok/s); generated: {} tokens in {:.2f} s ({:.1f} tok/s)",
                 tokens.size(), t_prompt, tokens.size() / t_prompt, gen.size(), t_gen,
                 gen.empty() ? 0.0 : gen.size() / t_gen);
  });
}

void register_logits(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Print the tokens and the logits at every position as JSON");
  auto a = std::make_shared<ModelArgs>();
  auto prompt = std::make_shared<std::string>();
  auto last_only = std::make_shared<bool>(false);
  auto num = std::make_shared<NumericsArgs>();
  add_model_args(cmd, *a);
  add_numerics_args(cmd, *num);
  cmd->add_option("-p,--prompt", *prompt, "prompt text (BOS added as the model's metadata says)")->required();
  cmd->add_flag("--last", *last_only, "only the logits after the last token");
  cmd->callback([=] {
    auto m = load(*a);
    model::ComputePool pool(a->threads);
    const auto tokens = m->vocab().tokenize(*prompt, {.add_special = true, .parse_special = false});
    model::Session session(*m, pool, 512, num->mode(), num->cache());
    // Streams the JSON so a long prompt with a large vocabulary never holds all rows at once.
    std::cout << "{\"tokens\": " << nlohmann::json(tokens).dump() << ", \"logits\": [";
    bool first = true;
    const auto last = static_cast<int64_t>(tokens.size()) - 1;
    session.eval_each(
        tokens,
        [&](int64_t, std::span<const float> row) {
          std::cout << (first ? "" : ", ") << nlohmann::json(std::vector<float>(row.begin(), row.end())).dump();
          first = false;
        },
        // --last computes only the printed row: the output projection is the largest matrix of a small model.
        [&](int64_t i) { return !*last_only || i == last; });
    std::cout << "]}\n";
  });
}

}  // namespace

void register_model_commands(CLI::App& app) {
  register_info(app);
  register_tokenize(app);
  register_generate(app);
  register_logits(app);
}

}  // namespace ilre::cli
