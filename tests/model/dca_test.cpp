// Dual chunk attention (model/dca.h): the blocked, tiled attention against a direct float64 evaluation of
// ChunkLlama's position maps, and the whole model against an independent numpy float64 forward pass with
// the same maps (scripts/make_exact_reference.py --dca-context).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <tuple>
#include <vector>

#include "ilre/error.h"
#include "model/attention.h"
#include "model/dca.h"
#include "model/kernels/ops.h"
#include "model/model.h"
#include "model/session.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

TEST(DcaMaps, ChunkLlamaRules) {
  const Dca d = Dca::for_context(32768);
  EXPECT_EQ(d.chunk, 24576);
  EXPECT_EQ(d.local, 4096);
  EXPECT_EQ(d.period(), 20480);
  EXPECT_EQ(d.key_pos(20480 * 3 + 7), 7);
  EXPECT_EQ(d.successive_pos(5), 20485);
  EXPECT_EQ(d.successive_pos(20479), 24576);  // clamped at chunk
  EXPECT_EQ(d.inter_pos(), 24576);
  // No query ever meets a distance past `chunk`, and a previous-chunk key within `local` keeps its true
  // distance.
  for (int32_t q : {0, 100, 20479, 20480, 40000, 123456}) {
    for (int32_t k : {0, 99, 20000, 20479, 20480, 40000}) {
      if (k > q) continue;
      const int64_t dq = d.chunk_of(q) - d.chunk_of(k);
      const int32_t qp = dq == 0 ? d.intra_pos(q) : (dq == 1 ? d.successive_pos(q) : d.inter_pos());
      const int64_t dist = qp - d.key_pos(k);
      EXPECT_GE(dist, 0);
      EXPECT_LE(dist, d.chunk);
      if (dq == 1 && q - k <= d.local) {
        EXPECT_EQ(dist, q - k);
      }
    }
  }
}

TEST(DcaMaps, AutoEngagesOnlyPastTheTrainedContext) {
  EXPECT_FALSE(resolve_dca(DcaMode::automatic, 32767 - 1, 32768, 32768));
  EXPECT_TRUE(resolve_dca(DcaMode::automatic, 32768, 32768, 32768));
  EXPECT_TRUE(resolve_dca(DcaMode::on, 10, 32768, 32768));
  EXPECT_FALSE(resolve_dca(DcaMode::off, 1 << 20, 32768, 32768));
  EXPECT_EQ(resolve_dca(DcaMode::on, 10, 1024, 32768)->chunk, 768);  // decode.dca_context
  EXPECT_EQ(sequence_capacity({.dca = DcaMode::off}, 32768), 32768);
  EXPECT_EQ(sequence_capacity({.dca = DcaMode::automatic}, 32768), 8 * 32768);
  EXPECT_EQ(sequence_capacity({.dca = DcaMode::off, .context = 65536}, 32768), 65536);
  EXPECT_EQ(dca_mode_from_name("auto"), DcaMode::automatic);
  EXPECT_FALSE(dca_mode_from_name("yes"));
}

// Normal-layout RoPE of one head in float64, straight from its definition.
std::vector<double> rope64(const float* x, int64_t d, double pos, double base) {
  std::vector<double> out(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; i += 2) {
    const double theta = pos * std::pow(base, -static_cast<double>(i) / static_cast<double>(d));
    const double c = std::cos(theta), s = std::sin(theta);
    out[static_cast<size_t>(i)] = x[i] * c - x[i + 1] * s;
    out[static_cast<size_t>(i + 1)] = x[i] * s + x[i + 1] * c;
  }
  return out;
}

struct Problem {
  int64_t n = 0, n_head = 4, n_head_kv = 2, d = 16;
  std::vector<float> q, k, v;  // before RoPE
  std::vector<int32_t> pos;
};

Problem random_problem(int64_t n, uint32_t seed) {
  Problem p;
  p.n = n;
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const auto fill = [&](std::vector<float>& x, int64_t width) {
    x.resize(static_cast<size_t>(n * width));
    for (float& e : x) e = g(rng);
  };
  fill(p.q, p.n_head * p.d);
  fill(p.k, p.n_head_kv * p.d);
  fill(p.v, p.n_head_kv * p.d);
  p.pos.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p.pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  return p;
}

constexpr double kBase = 10000.0;

// out[i] = softmax_j(q_i(region) · k_j / sqrt(d)) v_j over j <= i, every score from its own rotations.
std::vector<double> reference(const Problem& p, const Dca& dca) {
  std::vector<double> out(static_cast<size_t>(p.n * p.n_head * p.d), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(p.d));
  for (int64_t h = 0; h < p.n_head; ++h) {
    const int64_t kh = h / (p.n_head / p.n_head_kv);
    for (int64_t i = 0; i < p.n; ++i) {
      std::vector<double> s(static_cast<size_t>(i + 1));
      double mx = -1e300;
      for (int64_t j = 0; j <= i; ++j) {
        const int64_t dq = dca.chunk_of(static_cast<int32_t>(i)) - dca.chunk_of(static_cast<int32_t>(j));
        const double qp = dq == 0 ? dca.intra_pos(static_cast<int32_t>(i))
                                  : (dq == 1 ? dca.successive_pos(static_cast<int32_t>(i)) : dca.inter_pos());
        const auto qr = rope64(p.q.data() + (i * p.n_head + h) * p.d, p.d, qp, kBase);
        const auto kr = rope64(p.k.data() + (j * p.n_head_kv + kh) * p.d, p.d, dca.key_pos(static_cast<int32_t>(j)), kBase);
        double dot = 0.0;
        for (int64_t e = 0; e < p.d; ++e) dot += qr[static_cast<size_t>(e)] * kr[static_cast<size_t>(e)];
        s[static_cast<size_t>(j)] = dot * scale;
        mx = std::max(mx, s[static_cast<size_t>(j)]);
      }
      double sum = 0.0;
      for (double& e : s) sum += (e = std::exp(e - mx));
      for (int64_t j = 0; j <= i; ++j) {
        for (int64_t e = 0; e < p.d; ++e) {
          out[static_cast<size_t>((i * p.n_head + h) * p.d + e)] +=
              s[static_cast<size_t>(j)] / sum * p.v[static_cast<size_t>((j * p.n_head_kv + kh) * p.d + e)];
        }
      }
    }
  }
  return out;
}

// The engine's way: keys rotated once at their key positions, queries in three rotations, one tiled pass.
std::vector<float> engine(const Problem& p, const Dca& dca, KvType type) {
  const Rope rope(p.d, RopeLayout::normal, RopeParams{.freq_base = static_cast<float>(kBase)}, {}, /*precise=*/true);
  std::vector<float> k = p.k, q = p.q, qs = p.q, qi = p.q;
  for (int64_t i = 0; i < p.n; ++i) {
    const auto at = static_cast<int32_t>(i);
    rope.apply(k.data() + i * p.n_head_kv * p.d, p.n_head_kv, p.d, dca.key_pos(at));
    rope.apply(q.data() + i * p.n_head * p.d, p.n_head, p.d, dca.intra_pos(at));
    rope.apply(qs.data() + i * p.n_head * p.d, p.n_head, p.d, dca.successive_pos(at));
    rope.apply(qi.data() + i * p.n_head * p.d, p.n_head, p.d, dca.inter_pos());
  }
  HParams hp;
  hp.n_layer = 1;
  hp.n_head = p.n_head;
  hp.n_head_kv = p.n_head_kv;
  hp.head_dim_k = hp.head_dim_v = p.d;
  KvCache cache(hp, 1, type);
  cache.append(0, k.data(), p.v.data(), p.pos.data(), p.n);
  std::vector<float> out(static_cast<size_t>(p.n * p.n_head * p.d));
  AttentionArgs a;
  a.q = q.data();
  a.q_successive = qs.data();
  a.q_inter = qi.data();
  a.dca_period = dca.period();
  a.n_q = p.n;
  a.ldq = p.n_head * p.d;
  a.q_pos = p.pos;
  a.k = cache.keys(0);
  a.v = cache.values(0);
  a.kv_type = type;
  a.ldk = cache.k_width();
  a.ldv = cache.v_width();
  a.kv_pos = cache.positions(0);
  a.n_head = p.n_head;
  a.n_head_kv = p.n_head_kv;
  a.head_dim_k = a.head_dim_v = p.d;
  a.kq_scale = 1.0f / std::sqrt(static_cast<float>(p.d));
  a.out = out.data();
  a.ldo = p.n_head * p.d;
  ComputePool pool(2);
  attention(a, pool);
  return out;
}

double max_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// 700 tokens in chunks of 80: every query block and key tile meets all three regions and their borders
// (tiles of 256 keys span several chunks, blocks of 64 queries straddle chunk borders). The F16 cache rounds
// q, k, v and the probabilities as llama.cpp's does, so it is held to its rounding only.
TEST(DcaAttention, TiledMatchesFloat64Maps) {
  const Dca dca{96, 16};
  for (const auto& [type, seed, tolerance] : {std::tuple{KvType::f32, 7u, 2e-5}, std::tuple{KvType::f16, 11u, 1e-2}}) {
    const Problem p = random_problem(700, seed);
    const double diff = max_diff(engine(p, dca, type), reference(p, dca));
    std::printf("[ dca ] %s cache: max |d| vs float64 = %.2e\n", type == KvType::f32 ? "f32" : "f16", diff);
    EXPECT_LE(diff, tolerance);
  }
}

// Without the maps (plain RoPE over 700 positions) the same data differs from the DCA reference: the test
// above can fail.
TEST(DcaAttention, TheMapsMatter) {
  const Dca dca{96, 16};
  const Problem p = random_problem(700, 7);
  const Dca plain{1 << 20, 0};  // one chunk longer than the sequence: plain RoPE
  EXPECT_GT(max_diff(engine(p, plain, KvType::f32), reference(p, dca)), 1e-2);
}

// ---------------------------------------------------------------------------------------------------------
// Whole model: stories260K (llama, GQA) with chunks cut from a 128-token "trained" context (chunk 96,
// local 16, period 80), 400 tokens: queries meet their own chunk, the previous one and older ones.

constexpr int64_t kDcaContext = 128;

std::shared_ptr<const Model> stories() { return Model::load(test::data_model("stories260K-f32.gguf")); }

TEST(DcaForward, Stories260KMatchesFloat64) {
  auto model = stories();
  std::ifstream in(test::data_dir() + "/stories260K-dca-exact.json");
  ASSERT_TRUE(in);
  const nlohmann::json doc = nlohmann::json::parse(in);
  ASSERT_EQ(doc.at("dca_context").get<int64_t>(), kDcaContext);
  ComputePool pool(2);
  for (const auto& c : doc.at("cases")) {
    const auto tokens = c.at("tokens").get<std::vector<TokenId>>();
    Session session(*model, pool, 64, Numerics::exact);
    session.set_dca(Dca::for_context(kDcaContext));
    session.set_context(1024);
    double diff = 0.0;
    session.eval_each(tokens, [&](int64_t pos, std::span<const float> logits) {
      const auto& ids = c.at("top_ids")[static_cast<size_t>(pos)];
      const auto& vals = c.at("top_logits")[static_cast<size_t>(pos)];
      for (size_t r = 0; r < ids.size(); ++r) {
        diff = std::max(diff, std::fabs(vals[r].get<double>() - logits[ids[r].get<size_t>()]));
      }
    });
    std::printf("[ dca ] stories260K %zu tokens: max |dlogit| vs float64 = %.2e\n", tokens.size(), diff);
    EXPECT_LE(diff, 1e-4);
  }
}

std::vector<TokenId> some_tokens(const Model& m, int64_t n) {
  std::vector<TokenId> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(static_cast<TokenId>(1 + (i * 37 + i / 7) % (m.hparams().n_vocab - 1)));
  return t;
}

// Prefill in batches of 48 and then one token at a time (the decode path) gives the logits of one batch.
TEST(DcaForward, ChunkedAndTokenByTokenMatchOneBatch) {
  auto model = stories();
  ComputePool pool(2);
  const std::vector<TokenId> tokens = some_tokens(*model, 300);
  const auto logits_of = [&](int64_t batch, int64_t split) {
    Session s(*model, pool, batch, Numerics::exact);
    s.set_dca(Dca::for_context(kDcaContext));
    s.set_context(1024);
    std::vector<float> out;
    s.eval(std::span<const TokenId>(tokens).first(static_cast<size_t>(split)), out);
    for (size_t i = static_cast<size_t>(split); i < tokens.size(); ++i) s.eval(std::span<const TokenId>(&tokens[i], 1), out);
    return out;
  };
  const std::vector<float> whole = logits_of(512, 300);
  const std::vector<float> pieces = logits_of(48, 250);
  double diff = 0.0;
  for (size_t i = 0; i < whole.size(); ++i) diff = std::max(diff, std::fabs(double(whole[i]) - pieces[i]));
  EXPECT_LE(diff, 1e-4);
}

// Shorter than one period, DCA is plain RoPE: the same bits (llama_cpp numerics, F16 cache).
TEST(DcaForward, ShortSequencesAreUnchanged) {
  auto model = stories();
  ComputePool pool(2);
  const std::vector<TokenId> tokens = some_tokens(*model, 70);
  std::vector<float> plain, dca;
  Session a(*model, pool);
  a.eval(tokens, plain);
  Session b(*model, pool);
  b.set_dca(Dca::for_context(kDcaContext));
  b.eval(tokens, dca);
  EXPECT_EQ(plain, dca);
}

TEST(DcaForward, ContextLimitsAndAuto) {
  auto model = stories();
  ComputePool pool(2);
  const int64_t trained = model->hparams().n_ctx_train;
  Session s(*model, pool, 256);
  const std::vector<TokenId> too_long = some_tokens(*model, trained + 1);
  std::vector<float> out;
  EXPECT_THROW(s.eval(too_long, out), Exception);  // plain: the trained context is the limit
  s.reset();
  s.configure({.dca = DcaMode::automatic}, trained + 10);
  EXPECT_TRUE(s.dca().has_value());
  EXPECT_EQ(s.context(), kDcaContextFactor * trained);
  EXPECT_NO_THROW(s.eval(too_long, out));
  EXPECT_THROW(s.set_dca(std::nullopt), Exception);  // not mid-sequence
  s.reset();
  s.configure({.dca = DcaMode::automatic}, trained - 1);
  EXPECT_FALSE(s.dca().has_value());
  EXPECT_EQ(s.context(), trained);
}

}  // namespace
}  // namespace ilre::model
