#include "ilre/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "support/paths.h"

namespace ilre {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// configs/reference.yaml must list every key with exactly the compiled-in default.
TEST(Config, ReferenceFileListsEveryKeyWithItsDefault) {
  const std::string path = std::string(ILRE_SOURCE_DIR) + "/configs/reference.yaml";
  auto parsed = load_config(path);
  ASSERT_TRUE(parsed) << parsed.error().what();
  EXPECT_EQ(to_yaml(*parsed), to_yaml(Config{}));
  const std::string text = read_file(path);
  std::istringstream defaults(to_yaml(Config{}));
  for (std::string line; std::getline(defaults, line);) {
    const std::string key = line.substr(0, line.find(':'));
    EXPECT_NE(text.find(key + ":"), std::string::npos) << "reference.yaml lacks '" << key << "'";
  }
}

TEST(Config, ResolvedYamlRoundTrips) {
  Config c;
  c.prefill.layer = 5;
  c.pooling.kernels = {1, 9};
  c.pooling.shares = {0.3, 0.7};
  c.query.template_text = "Q: {question}\nA:";
  auto back = parse_config(to_yaml(c));
  ASSERT_TRUE(back) << back.error().what();
  EXPECT_EQ(to_yaml(*back), to_yaml(c));
  EXPECT_EQ(back->pooling.kernels, (std::vector<int32_t>{1, 9}));
}

TEST(Config, UnknownKeysAndBadValuesNameTheKey) {
  auto unknown = parse_config("prefill:\n  sinks: 4\n", "x.yaml");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("prefill.sinks"), std::string::npos);
  auto wrong_type = parse_config("recall:\n  budget: lots\n");
  ASSERT_FALSE(wrong_type);
  EXPECT_NE(wrong_type.error().message.find("recall.budget"), std::string::npos);
  auto shares = parse_config("pooling:\n  kernels: [1, 3]\n  shares: [0.5, 0.6]\n");
  ASSERT_FALSE(shares);
  EXPECT_NE(shares.error().message.find("sum to 1"), std::string::npos);
  auto even = parse_config("pooling:\n  kernels: [2]\n  shares: [1]\n");
  EXPECT_FALSE(even);
  auto not_yaml = parse_config("prefill: [unclosed\n");
  ASSERT_FALSE(not_yaml);
  EXPECT_EQ(not_yaml.error().code, errc::bad_json);
  EXPECT_TRUE(parse_config(""));  // empty: every default
}

TEST(Config, OverridesAndEnvironment) {
  Config c;
  ASSERT_TRUE(apply_override(c, "recall.budget=4096"));
  EXPECT_EQ(c.recall.budget, 4096);
  ASSERT_TRUE(apply_override(c, "pooling.kernels=[1, 5]"));
  ASSERT_TRUE(apply_override(c, "pooling.shares=[0.5, 0.5]"));
  EXPECT_EQ(c.pooling.kernels, (std::vector<int32_t>{1, 5}));
  EXPECT_FALSE(apply_override(c, "recall.budgets=1"));
  EXPECT_FALSE(apply_override(c, "recall.budget"));
  EXPECT_TRUE(c.validate());
  ASSERT_TRUE(apply_override(c, "decode.positions=sideways"));
  EXPECT_FALSE(c.validate());
  c.decode.positions = "original";
  ::setenv("ILRE_PREFILL_WINDOW", "2048", 1);
  ::setenv("ILRE_DECODE_NUMERICS", "exact", 1);
  ASSERT_TRUE(apply_environment(c));
  ::unsetenv("ILRE_PREFILL_WINDOW");
  ::unsetenv("ILRE_DECODE_NUMERICS");
  EXPECT_EQ(c.prefill.window, 2048);
  EXPECT_EQ(c.decode.numerics, "exact");
  EXPECT_TRUE(c.validate());
}

}  // namespace
}  // namespace ilre
