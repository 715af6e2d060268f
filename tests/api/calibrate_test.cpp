// Offline layer selection: the tie rule on hand-made recall tables, and a real calibration run on
// stories260K whose table and written config agree with each other.
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include "eval/calibrate.h"
#include "model/compute_pool.h"
#include "support/paths.h"

namespace ilre::eval {
namespace {

TEST(ChooseLayer, ExactTieGoesToTheSmallerLayer) {
  EXPECT_EQ(choose_layer({0.2, 0.9, 0.9, 0.5}, 0.0), 1);
}

TEST(ChooseLayer, DeficitWithinToleranceIsATie) {
  EXPECT_EQ(choose_layer({0.2, 0.80, 0.83, 0.5}, 0.0), 2);
  EXPECT_EQ(choose_layer({0.2, 0.80, 0.83, 0.5}, 0.02), 2);
  EXPECT_EQ(choose_layer({0.2, 0.81, 0.83, 0.5}, 0.02), 1);
  EXPECT_EQ(choose_layer({0.2, 0.81, 0.83, 0.5}, 1.0), 0);
}

TEST(ChooseLayer, NoLayers) { EXPECT_EQ(choose_layer({}, 0.02), -1); }

TEST(Calibrate, Stories260KTableAndConfigAgree) {
  const auto m = model::Model::load(test::data_model("stories260K-f32.gguf"));
  model::ComputePool pool(2);
  Config cfg;
  CalibrationSettings s;
  s.lengths = {1024, 2048};
  s.passkey_digits = {1, 4};
  s.kv_needles = 1;
  s.fact_needles = 1;
  s.budget = 256;
  const CalibrationResult r = calibrate(*m, pool, cfg, s);
  ASSERT_EQ(r.mean_recall.size(), static_cast<size_t>(m->hparams().n_layer));
  ASSERT_EQ(r.samples.size(), 2u * 4u);
  for (double v : r.mean_recall) {
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
  }
  EXPECT_EQ(r.layer, choose_layer(r.mean_recall, s.tolerance));
  EXPECT_NE(r.table().find("<- l_R"), std::string::npos);

  const std::string path = test::scratch_dir("calibrate") + "/models/stories.yaml";
  write_model_config(path, r, "stories260K-f32.gguf");
  const YAML::Node y = YAML::LoadFile(path);
  EXPECT_EQ(y["layer"].as<int>(), r.layer);
  EXPECT_EQ(y["mean_recall"].size(), r.mean_recall.size());
  EXPECT_EQ(y["calibration"]["settings"]["budget"].as<int64_t>(), 256);
}

}  // namespace
}  // namespace ilre::eval
