// Offline layer selection: the tie rule on hand-made recall tables, and a real calibration run on
// stories260K whose table and written config agree with each other.
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include "eval/calibrate.h"
#include "model/kernels/compute_pool.h"
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

// Gemma 3 270M's recorded synthetic table (configs/models/gemma-3-270m-q4_k_m.yaml): layer 3 ties with the
// best overall, but among the global layers (5, 11, 17) layer 5 is the first within the tolerance.
TEST(ChooseLayer, OnlyEligibleLayersCompete) {
  const std::vector<double> gemma{0.5383, 0.7709, 0.5974, 0.8860, 0.1520, 0.8921, 0.4990, 0.8865, 0.4140,
                                  0.5513, 0.7019, 0.8961, 0.5490, 0.5112, 0.3862, 0.8230, 0.5011, 0.8523};
  EXPECT_EQ(choose_layer(gemma, 0.02), 3);
  std::vector<bool> global(18, false);
  global[5] = global[11] = global[17] = true;
  EXPECT_EQ(choose_layer(gemma, 0.02, global), 5);
  EXPECT_EQ(choose_layer(gemma, 0.0, global), 11);
  EXPECT_EQ(choose_layer(gemma, 0.02, std::vector<bool>(18, false)), -1);
}

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
