// Offline layer selection: the tie rule on hand-made recall tables, real-text evidence read from a qa_real
// layer probe and folded into the rule, and a real calibration run on stories260K whose table and written
// config agree with each other.
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>
#include <zstd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

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

// Gemma 3 270M's synthetic table as calibrated with pooling kernels [1, 3, 7, 15, 31]: layer 3 ties with the
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

// A qa_real probe result as `ilre eval` writes it (only the fields the evidence reader uses).
nlohmann::json probe_run() {
  auto question = [](const char* id, bool heldout, std::vector<std::vector<double>> cover) {
    return nlohmann::json{{"id", id}, {"heldout", heldout}, {"probe_cover", cover}};
  };
  return {{"task", "qa_real"},
          {"model", "/somewhere/models/m.gguf"},
          {"settings", {{"probe_layers", {1, 3}}, {"budgets", {512, 1024}}}},
          {"contexts",
           {{{"name", "doc"},
             {"questions",
              {question("a", false, {{0.2, 0.4}, {0.8, 1.0}}), question("b", false, {{0.0, 0.2}, {0.6, 0.6}}),
               question("held", true, {{1.0, 1.0}, {0.0, 0.0}})}}}}}};
}

TEST(Evidence, MeanCoverOfTheTuneQuestionsPerProbedLayer) {
  const EvidenceRecall e = evidence_from_qa_real(probe_run(), 1024, 5, "probe.json");
  EXPECT_EQ(e.model, "m.gguf");
  EXPECT_EQ(e.n_questions, 2);  // the heldout question never chooses a setting
  ASSERT_EQ(e.by_layer.size(), 5u);
  EXPECT_DOUBLE_EQ(e.by_layer[1], 0.3);
  EXPECT_DOUBLE_EQ(e.by_layer[3], 0.8);
  for (size_t l : {0u, 2u, 4u}) EXPECT_FALSE(e.probed(l)) << l;
  EXPECT_DOUBLE_EQ(evidence_from_qa_real(probe_run(), 512, 5, "p").by_layer[3], 0.7);
  EXPECT_TRUE(e.to_json()["recall"][0].is_null());
}

TEST(Evidence, ClearErrorsForARunItCannotUse) {
  auto error_of = [](const nlohmann::json& run, int64_t budget, int64_t n_layers) -> std::string {
    try {
      evidence_from_qa_real(run, budget, n_layers, "p.json");
    } catch (const Exception& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of(probe_run(), 2048, 5).find("budget 2048 was not probed (probed: [512,1024])"), std::string::npos);
  EXPECT_NE(error_of(probe_run(), 1024, 3).find("probed layer 3 is past"), std::string::npos);
  nlohmann::json no_probe = probe_run();
  no_probe["settings"]["probe_layers"] = nlohmann::json::array();
  EXPECT_NE(error_of(no_probe, 1024, 5).find("no layer probe"), std::string::npos);
  nlohmann::json other = probe_run();
  other["task"] = "niah";
  EXPECT_NE(error_of(other, 1024, 5).find("not a qa_real result"), std::string::npos);
  nlohmann::json short_row = probe_run();
  short_row["contexts"][0]["questions"][0]["probe_cover"] = {{0.1}};
  EXPECT_NE(error_of(short_row, 1024, 5).find("question a"), std::string::npos);
}

TEST(Evidence, ReadsARunFolderWithItsCompressedResult) {
  const std::filesystem::path dir = std::filesystem::path(test::scratch_dir("evidence")) / "run" / "m";
  std::filesystem::create_directories(dir);
  const std::string text = probe_run().dump();
  std::string packed(ZSTD_compressBound(text.size()), '\0');
  packed.resize(ZSTD_compress(packed.data(), packed.size(), text.data(), text.size(), 3));
  std::ofstream(dir / "qa_real.json.zst", std::ios::binary) << packed;
  EXPECT_EQ(read_qa_real_json(dir.parent_path().string()), probe_run());
  std::ofstream(dir / "qa_real.json.zst", std::ios::binary) << packed.substr(0, packed.size() / 2);
  EXPECT_THROW(read_qa_real_json((dir / "qa_real.json.zst").string()), Exception);
  EXPECT_THROW(read_qa_real_json((dir / "missing.json").string()), Exception);
}

// Gemma 3 270M's needle table with its real-text probe (bench/README.md "Real documents" 1, tune questions at
// 1,024 tokens): needles alone put layer 3 first; with the evidence the first global layer, 5, wins even
// when every layer may compete.
TEST(Evidence, RealTextOutranksNeedleTies) {
  const std::vector<double> gemma{0.5383, 0.7709, 0.5974, 0.8860, 0.1520, 0.8921, 0.4990, 0.8865, 0.4140,
                                  0.5513, 0.7019, 0.8961, 0.5490, 0.5112, 0.3862, 0.8230, 0.5011, 0.8523};
  EvidenceRecall e;
  e.by_layer.assign(18, std::nan(""));
  const std::pair<int, double> probe[] = {{1, 0.04}, {2, 0.04}, {3, 0.45}, {4, 0.01}, {5, 0.82}, {7, 0.32}, {9, 0.09}, {11, 0.56}};
  for (auto [l, v] : probe) e.by_layer[static_cast<size_t>(l)] = v;
  const std::vector<double> c = combined_recall(gemma, e);
  std::vector<bool> probed(18);
  for (size_t l = 0; l < 18; ++l) probed[l] = e.probed(l);
  EXPECT_EQ(choose_layer(gemma, 0.02), 3);
  EXPECT_EQ(choose_layer(c, 0.02, probed), 5);
  EXPECT_DOUBLE_EQ(c[5], 0.5 * (0.8921 + 0.82));
  EXPECT_TRUE(std::isnan(c[0]));
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
  EXPECT_FALSE(y["evidence_recall"]);

  // Evidence on layers 2 and 4 only: the choice is made among them, on the combined recall.
  EvidenceRecall e;
  e.by_layer.assign(r.mean_recall.size(), std::nan(""));
  e.by_layer[2] = 0.0;
  e.by_layer[4] = 1.0;
  e.source = "probe";
  s.evidence = e;
  const CalibrationResult re = calibrate(*m, pool, cfg, s);
  EXPECT_EQ(re.mean_recall, r.mean_recall);
  EXPECT_EQ(re.layer, 4);  // needle recall <= 1 cannot make up evidence 0 against 1 within the tolerance
  EXPECT_NE(re.table().find("evidence: probe"), std::string::npos);
  write_model_config(path, re, "stories260K-f32.gguf");
  const YAML::Node ye = YAML::LoadFile(path);
  EXPECT_EQ(ye["layer"].as<int>(), 4);
  ASSERT_EQ(ye["evidence_recall"].size(), r.mean_recall.size());
  EXPECT_TRUE(ye["evidence_recall"][0].IsNull());
  EXPECT_DOUBLE_EQ(ye["evidence_recall"][4].as<double>(), 1.0);

  s.evidence->by_layer.pop_back();
  EXPECT_THROW(calibrate(*m, pool, cfg, s), Exception);
}

}  // namespace
}  // namespace ilre::eval
