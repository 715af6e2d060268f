// The eval YAML: defaults, per-model overrides, the ilre override tree, and clear errors for bad input.
#include "eval/suite_config.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "ilre/config.h"
#include "ilre/error.h"
#include "support/paths.h"

namespace ilre::eval {
namespace {

// The message of the exception parse_eval_config throws for text ("" when it parses).
std::string error_of(const std::string& text) {
  try {
    parse_eval_config(text, "t.yaml");
  } catch (const Exception& e) {
    return e.what();
  }
  return "";
}

TEST(SuiteConfig, TopLevelAndModelOverrides) {
  const EvalConfig c = parse_eval_config(R"(
seed: 3
lengths: [2048, 1024]
depth_steps: 5
tasks: [niah_single, vt]
haystacks: [prose]
methods: [ilre, snapkv]
budget: "10%"
task_options: {passkey_digits: 5}
method_options: {snapkv_kernel: 5}
ilre: {prefill: {sink: 8}, scoring: {over_queries: sum}}
models:
  - path: a.gguf
  - path: dir/b.gguf
    name: bee
    lengths: [512]
    depths: [0, 100]
    budget: 300
    method_options: {lagkv_lag: 32}
    ilre: {prefill: {window: 128}}
)", "t.yaml");
  EXPECT_EQ(c.defaults.seed, 3u);
  EXPECT_EQ(c.defaults.depths, (std::vector<double>{0, 0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(c.defaults.tasks, (std::vector<Task>{Task::niah_single, Task::vt}));
  EXPECT_EQ(c.defaults.methods, (std::vector<std::string>{"ilre", "snapkv"}));
  EXPECT_DOUBLE_EQ(c.defaults.budget.fraction, 0.1);
  EXPECT_EQ(c.defaults.budget.for_document(5000), 500);
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models[0].name, "a");
  EXPECT_EQ(c.models[0].settings.lengths, (std::vector<int64_t>{2048, 1024}));
  const ModelEntry& b = c.models[1];
  EXPECT_EQ(b.name, "bee");
  EXPECT_EQ(b.settings.lengths, (std::vector<int64_t>{512}));
  EXPECT_EQ(b.settings.depths, (std::vector<double>{0, 1}));
  EXPECT_EQ(b.settings.budget.for_document(5000), 300);
  EXPECT_EQ(b.settings.task.passkey_digits, 5) << "inherited from the top level";
  EXPECT_EQ(b.settings.method.snapkv_kernel, 5);
  EXPECT_EQ(b.settings.method.lagkv_lag, 32);
  // The ilre trees merge key by key: the global sink and scoring stay, the entry adds its window.
  auto cfg = parse_config(b.ilre_yaml, "b");
  ASSERT_TRUE(cfg) << cfg.error().what();
  EXPECT_EQ(cfg->prefill.sink, 8);
  EXPECT_EQ(cfg->prefill.window, 128);
  EXPECT_EQ(cfg->scoring.over_queries, "sum");
  EXPECT_EQ(parse_config(c.models[0].ilre_yaml, "a")->prefill.window, Config{}.prefill.window);
}

TEST(SuiteConfig, ModelOverrideFromTheCommandLine) {
  const EvalConfig c = parse_eval_config("lengths: [4096]\nmodels:\n  - {path: stories260K-f32.gguf, lengths: [256]}\n", "t");
  const ModelEntry listed = entry_for_model(c, "/x/y/stories260K-f32.gguf");
  EXPECT_EQ(listed.path, "/x/y/stories260K-f32.gguf");
  EXPECT_EQ(listed.settings.lengths, (std::vector<int64_t>{256}));
  const ModelEntry other = entry_for_model(c, "other.gguf");
  EXPECT_EQ(other.settings.lengths, (std::vector<int64_t>{4096}));
  EXPECT_EQ(other.name, "other");
}

TEST(SuiteConfig, ClearErrors) {
  EXPECT_NE(error_of("tasks: [niah_single, niah_triple]").find("unknown entry 'niah_triple'"), std::string::npos);
  EXPECT_NE(error_of("methods: [ilre, h2o]").find("known: full, streaming"), std::string::npos);
  EXPECT_NE(error_of("lengths: []").find("t.yaml: lengths: must not be empty"), std::string::npos);
  EXPECT_NE(error_of("models: []").find("models"), std::string::npos);
  EXPECT_NE(error_of("lenghts: [1]").find("unknown key"), std::string::npos);
  EXPECT_NE(error_of("depths: [0, 120]").find("0..100"), std::string::npos);
  EXPECT_NE(error_of("depths: [0]\ndepth_steps: 3").find("not both"), std::string::npos);
  EXPECT_NE(error_of("budget: lots").find("budget"), std::string::npos);
  EXPECT_NE(error_of("budget: 0").find("budget"), std::string::npos);
  EXPECT_NE(error_of("methods: [ilre, ilre]").find("twice"), std::string::npos);
  EXPECT_NE(error_of("ilre: {prefil: {sink: 1}}").find("prefil"), std::string::npos) << "ilre's own parser runs";
  EXPECT_NE(error_of("models:\n  - {lengths: [256]}").find("models[0].path: is required"), std::string::npos);
  EXPECT_NE(error_of("models:\n  - {path: a, tasks: [x]}").find("models[0].tasks"), std::string::npos);
  EXPECT_NE(error_of("task_options: {distractors: 40}").find("distractors"), std::string::npos);
  EXPECT_NE(error_of("method_options: {snapkv_kernel: 4}").find("odd"), std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("mapping"), std::string::npos);
  EXPECT_EQ(error_of("seed: 1"), "");
  EXPECT_NE(error_of("qa_real: {documents: [a.yaml], budget: [1]}").find("qa_real.budget: unknown key"), std::string::npos);
  EXPECT_NE(error_of("qa_real: {budgets: [1]}").find("documents"), std::string::npos);
  EXPECT_NE(error_of("qa_real: {documents: [a.yaml], lengths: [100000]}").find("filler"), std::string::npos);
  EXPECT_NE(error_of("qa_real: {documents: [a.yaml], split: test}").find("split"), std::string::npos);
  EXPECT_NE(error_of("qa_real: {documents: [a.yaml], budgets: [0]}").find("budgets"), std::string::npos);
}

TEST(SuiteConfig, ShippedConfigsParse) {
  // Every shipped eval file, so a config named in bench/README.md cannot rot unnoticed.
  int n_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ILRE_SOURCE_DIR) + "/configs")) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("eval-") || entry.path().extension() != ".yaml") continue;
    ++n_files;
    SCOPED_TRACE(name);
    const EvalConfig c = load_eval_config(entry.path().string());
    EXPECT_FALSE(c.models.empty());
    for (const ModelEntry& e : c.models) EXPECT_TRUE(parse_config(e.ilre_yaml, e.name)) << e.name;
  }
  EXPECT_GE(n_files, 9);
  const EvalConfig real = load_eval_config(std::string(ILRE_SOURCE_DIR) + "/configs/eval-real.yaml");
  ASSERT_TRUE(real.models[0].settings.qa_real);
  EXPECT_EQ(real.models[0].settings.qa_real->documents.size(), 4u);
  EXPECT_EQ(real.models[0].settings.qa_real->lengths, (std::vector<int64_t>{0, 1048576}));
}

}  // namespace
}  // namespace ilre::eval
