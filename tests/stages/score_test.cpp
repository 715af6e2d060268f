// The score stage reads segments on the compute pool's threads: its scores must be the same bits on any
// number of threads, equal the scorer run over the whole key array at once, and arrive in document order.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "engine/executor.h"
#include "engine/pipeline.h"
#include "model/kernels/quant.h"
#include "stages/score.h"
#include "storage/store_reader.h"
#include "storage/store_writer.h"
#include "support/paths.h"

namespace ilre::stages {
namespace {

using namespace std::chrono_literals;

constexpr retrieval::HeadLayout kLayout{4, 2, 32};
constexpr int64_t kWidth = kLayout.n_head_kv * kLayout.head_dim;
constexpr int64_t kQueries = 6;

struct Collect {
  using In = ScoreBlock;
  static constexpr std::string_view kName = "collect";
  Result<void> process(ScoreBlock&& b) {
    first_pos.push_back(b.first_pos);
    scores.insert(scores.end(), b.scores.begin(), b.scores.end());
    return {};
  }
  std::vector<int64_t> first_pos;
  std::vector<float> scores;
};

// Keys exactly representable in F16, so the store gives back what the reference scores.
std::vector<float> random_keys(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.5f);
  std::vector<float> k(static_cast<size_t>(n * kWidth));
  for (float& x : k) x = model::fp16_to_fp32(model::fp32_to_fp16(g(rng)));
  return k;
}

std::filesystem::path write_store(const std::string& tag, const std::vector<float>& keys, int64_t n, int64_t segment,
                                  storage::ShuffleMode shuffle = storage::ShuffleMode::automatic) {
  const auto dir = std::filesystem::path(ilre::test::scratch_dir("score-stage-" + tag)) / "store";
  storage::StoreMeta meta;
  meta.model_fingerprint = "sha256:score-stage-test";
  meta.model_name = "score-stage-test";
  meta.retrieval_layer = 1;
  meta.n_kv_heads = static_cast<int32_t>(kLayout.n_head_kv);
  meta.head_dim = static_cast<int32_t>(kLayout.head_dim);
  auto w = storage::StoreWriter::create(dir, meta, storage::WriteOptions{.shuffle = shuffle, .fsync = false, .io = nullptr});
  EXPECT_TRUE(w.has_value());
  for (int64_t at = 0; at < n; at += segment) {
    const int64_t m = std::min(segment, n - at);
    std::vector<int32_t> tokens(static_cast<size_t>(m), 5);
    auto r = w->append(std::span<const float>(keys).subspan(static_cast<size_t>(at * kWidth), static_cast<size_t>(m * kWidth)),
                       tokens, at);
    EXPECT_TRUE(r.has_value()) << r.error().message;
  }
  return dir;
}

std::vector<float> staged_scores(const storage::StoreReader& reader, const retrieval::QueryScorer& scorer, int threads,
                                 std::vector<int64_t>* first_pos = nullptr) {
  model::ComputePool pool(threads);
  engine::ThreadPoolExecutor executor(2);
  engine::Pipeline p("score-test");
  auto score = p.emplace<ScoreStage>(reader, scorer, ScoreStage::KeyTransform{}, ScoreStage::ScoreTransform{},
                                     threads > 0 ? &pool : nullptr);
  auto sink = p.emplace<Collect>();
  p.connect(score, sink);
  engine::RunHandle run = std::move(p).run(executor);
  auto r = run.wait_for(30s);
  EXPECT_TRUE(r.has_value() && r->has_value());
  if (first_pos) *first_pos = sink.stage().first_pos;
  return sink.stage().scores;
}

class ScoreStageLayouts : public ::testing::TestWithParam<storage::ShuffleMode> {};

// Channel-shuffled segments decode channel-major for the scorer, the others token-major.
TEST_P(ScoreStageLayouts, SameBitsOnAnyNumberOfThreadsAndTheWholeArraysScores) {
  const int64_t n = 9000, segment = 1000;  // 9 segments: batches of 2 and 3 leave a remainder
  const std::vector<float> keys = random_keys(n, 3);
  const std::string tag(storage::shuffle_mode_name(GetParam()));
  const auto reader = storage::StoreReader::open(write_store("threads-" + tag, keys, n, segment, GetParam()));
  ASSERT_TRUE(reader.has_value());
  for (const auto& info : reader->segments()) {
    ASSERT_EQ(storage::shuffle_name(info.shuffle), tag);
  }
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(kQueries * kLayout.n_head * kLayout.head_dim));
  for (float& x : q) x = g(rng);
  for (auto heads : {retrieval::Aggregation::sum, retrieval::Aggregation::max}) {
    const retrieval::ScoreConfig cfg{true, heads, retrieval::Aggregation::max, 0.125f};
    const retrieval::QueryScorer scorer(q, kQueries, kLayout, cfg);

    // The reference: the scorer over the whole key array at once, token-major. The GEMM's tiles differ
    // from the stage's (and channel-major keys take another packing), so it agrees to rounding.
    retrieval::QueryScorer whole(q, kQueries, kLayout, cfg);
    whole.observe(keys.data(), n);
    std::vector<float> want(static_cast<size_t>(n));
    whole.score(keys.data(), n, want.data());

    std::vector<int64_t> first_pos;
    const std::vector<float> one = staged_scores(*reader, scorer, 0, &first_pos);
    ASSERT_EQ(first_pos.size(), 9u);
    for (size_t i = 0; i < first_pos.size(); ++i) EXPECT_EQ(first_pos[i], static_cast<int64_t>(i) * segment);
    ASSERT_EQ(one.size(), want.size());
    float scale = 0, err = 0;
    for (size_t j = 0; j < want.size(); ++j) {
      scale = std::max(scale, std::fabs(want[j]));
      err = std::max(err, std::fabs(one[j] - want[j]));
    }
    EXPECT_LT(err, 1e-5f * scale);
    // Every thread count gives the single-threaded stage's bits: stats merge in segment order.
    for (int threads : {1, 2, 3}) EXPECT_EQ(staged_scores(*reader, scorer, threads), one) << threads << " threads";
  }
}

INSTANTIATE_TEST_SUITE_P(Stored, ScoreStageLayouts,
                         ::testing::Values(storage::ShuffleMode::channel_bytes, storage::ShuffleMode::none,
                                           storage::ShuffleMode::bytes),
                         [](const auto& info) { return std::string(storage::shuffle_mode_name(info.param)); });

TEST(ScoreStage, ADamagedSegmentIsAnErrorOnAnyThread) {
  const int64_t n = 4000, segment = 1000;
  const std::vector<float> keys = random_keys(n, 4);
  const auto dir = write_store("damaged", keys, n, segment);
  const auto reader = storage::StoreReader::open(dir);
  ASSERT_TRUE(reader.has_value());
  // Flip a byte inside the key frame of the third segment (read by the second thread of the first batch
  // of pass 1 on 2 threads, or of the second batch).
  const auto file = dir / reader->segments()[2].file;
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(file) - 40));
  f.put('\x5a');
  f.close();
  std::vector<float> q(static_cast<size_t>(kQueries * kLayout.n_head * kLayout.head_dim), 0.1f);
  const retrieval::QueryScorer scorer(q, kQueries, kLayout, retrieval::ScoreConfig{});
  for (int threads : {0, 2}) {
    model::ComputePool pool(std::max(threads, 1));
    engine::ThreadPoolExecutor executor(2);
    engine::Pipeline p("score-damaged");
    auto score = p.emplace<ScoreStage>(*reader, scorer, ScoreStage::KeyTransform{}, ScoreStage::ScoreTransform{},
                                       threads > 0 ? &pool : nullptr);
    auto sink = p.emplace<Collect>();
    p.connect(score, sink);
    engine::RunHandle run = std::move(p).run(executor);
    auto r = run.wait_for(30s);
    ASSERT_TRUE(r.has_value()) << "the run did not end";
    ASSERT_FALSE(r->has_value()) << threads;
    EXPECT_EQ(r->error().code, errc::checksum_mismatch) << r->error().message;
  }
}

}  // namespace
}  // namespace ilre::stages
