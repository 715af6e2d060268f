#include "eval/methods.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ilre/error.h"
#include "retrieval/configure.h"
#include "retrieval/pooling.h"

namespace ilre::eval {
namespace {

retrieval::SelectionConfig single_kernel(int32_t kernel, int64_t budget, int64_t keep_first, int64_t keep_last) {
  retrieval::SelectionConfig sel;
  sel.kernels = {{kernel, 1.0}};
  sel.mode = retrieval::SelectionMode::pooled_topk;
  sel.budget = budget;
  sel.keep_first = keep_first;
  sel.keep_last = keep_last;
  return sel;
}

// ILRe as `ilre ask` runs it: score_config and selection_config from the user's Config. The ablation
// replaces the kernel list by one kernel with the whole budget and changes nothing else.
class IlreMethod : public Method {
 public:
  IlreMethod(std::string name, const Config& cfg, const model::HParams& hp, int32_t single_kernel)
      : name_(std::move(name)), cfg_(cfg), score_(retrieval::score_config(cfg, hp)), single_kernel_(single_kernel) {}
  std::string_view name() const override { return name_; }
  std::vector<int64_t> pick(const MethodInputs& in, std::vector<float>* relevance) const override {
    std::vector<float> s = layer_scores(in);
    for (const MethodInputs::Layer& more : in.more_layers) {
      MethodInputs other = in;
      other.keys = more.keys;
      other.queries = more.queries;
      // Each layer's score is a sum of softmax masses, so the layers' scores share one scale.
      const std::vector<float> add = layer_scores(other);
      for (size_t t = 0; t < s.size(); ++t) s[t] += add[t];
    }
    if (cfg_.recall.policy == "hybrid") {
      if (in.words == nullptr || static_cast<int64_t>(in.doc_tokens.size()) != in.n_doc) {
        throw Exception(errc::internal, "recall.policy hybrid needs the document's tokens");
      }
      const std::vector<float> lex = retrieval::lexical_scores(in.doc_tokens, in.question_tokens, *in.words,
                                                               {.window = cfg_.recall.lexical_window});
      retrieval::fuse_lexical(s, lex, cfg_.recall.lexical_weight);
    }
    retrieval::SelectionConfig sel = retrieval::selection_config(cfg_, in.budget, in.sink);
    if (single_kernel_ > 0) sel.kernels = {{single_kernel_, 1.0}};
    return retrieval::select_tokens(s, sel, relevance);
  }
  nlohmann::json settings() const override {
    nlohmann::json kernels = single_kernel_ > 0 ? nlohmann::json::array({single_kernel_}) : nlohmann::json(cfg_.pooling.kernels);
    nlohmann::json shares = single_kernel_ > 0 ? nlohmann::json::array({1.0}) : nlohmann::json(cfg_.pooling.shares);
    return {{"softmax", cfg_.scoring.softmax}, {"over_heads", cfg_.scoring.over_heads},
            {"over_queries", cfg_.scoring.over_queries}, {"positions", cfg_.scoring.positions},
            {"query", cfg_.scoring.query},
            {"kernels", kernels}, {"shares", shares}, {"mode", cfg_.pooling.mode},
            {"keep_last", cfg_.recall.keep_last}, {"policy", cfg_.recall.policy},
            {"lexical_weight", cfg_.recall.lexical_weight}, {"lexical_window", cfg_.recall.lexical_window}};
  }

 private:
  std::vector<float> layer_scores(const MethodInputs& in) const {
    std::span<const float> q = in.queries;
    int64_t n_q = in.n_query;
    if (cfg_.scoring.query == "question" && in.question_end > in.question_begin) {
      const int64_t width = in.layout.n_head * in.layout.head_dim;
      q = q.subspan(static_cast<size_t>(in.question_begin * width), static_cast<size_t>((in.question_end - in.question_begin) * width));
      n_q = in.question_end - in.question_begin;
    }
    return attention_scores(in, q, n_q, score_);
  }

  std::string name_;
  Config cfg_;
  retrieval::ScoreConfig score_;
  int32_t single_kernel_;  // 0: the configured kernels
};

// SnapKV (snapkv_utils.py): observation window = the query tokens; softmax over the keys per head and
// window row, summed over both (kvpress averages per KV group instead; one shared token set needs one
// score per token), avg-pooled, top-k. Differences: the softmax covers the context keys only (SnapKV's
// also covers the causal window itself, which only rescales rows), and the token set is shared by all heads.
class SnapKvMethod : public Method {
 public:
  SnapKvMethod(const model::HParams& hp, int32_t kernel) : kq_scale_(hp.kq_scale), kernel_(kernel) {}
  std::string_view name() const override { return "snapkv"; }
  std::vector<int64_t> pick(const MethodInputs& in, std::vector<float>* /*unranked*/) const override {
    const retrieval::ScoreConfig sc{.softmax = true,
                                    .over_heads = retrieval::Aggregation::sum,
                                    .over_queries = retrieval::Aggregation::sum,
                                    .kq_scale = kq_scale_};
    const std::vector<float> pooled = avg_pool(attention_scores(in, in.queries, in.n_query, sc), kernel_);
    return top_k(pooled, in.budget, in.sink);
  }
  nlohmann::json settings() const override {
    return {{"window", "query tokens"}, {"softmax", true}, {"over_heads", "sum"}, {"over_queries", "sum"},
            {"pool", "avg"}, {"kernel", kernel_}};
  }

 private:
  float kq_scale_;
  int32_t kernel_;
};

// GemFilter (gem_filter_utils.py, find_context + standard_dis_index): the last query token's raw q·k summed
// over all heads (no softmax; the model's scale is uniform and does not change the ranking), avg-pooled,
// top-k at one layer. Here that layer is l_R, so it meets ILRe on the same keys.
class GemFilterMethod : public Method {
 public:
  explicit GemFilterMethod(int32_t kernel) : kernel_(kernel) {}
  std::string_view name() const override { return "gemfilter"; }
  std::vector<int64_t> pick(const MethodInputs& in, std::vector<float>* /*unranked*/) const override {
    const retrieval::ScoreConfig sc{.softmax = false,
                                    .over_heads = retrieval::Aggregation::sum,
                                    .over_queries = retrieval::Aggregation::sum,
                                    .kq_scale = 1.0f};
    const int64_t width = in.layout.n_head * in.layout.head_dim;
    const auto last = in.queries.subspan(static_cast<size_t>((in.n_query - 1) * width), static_cast<size_t>(width));
    std::vector<float> s = attention_scores(in, last, 1, sc);
    if (kernel_ > 1) s = avg_pool(s, kernel_);
    return top_k(s, in.budget, in.sink);
  }
  nlohmann::json settings() const override {
    return {{"query", "last token"}, {"softmax", false}, {"over_heads", "sum"}, {"pool", "avg"}, {"kernel", kernel_}};
  }

 private:
  int32_t kernel_;
};

// LagKV used for prompt compression: partition scores as lag_kv.py, the tail kept verbatim, and (unless
// cross_scoring) ranks per partition so the global top-k keeps the same share of every partition, as
// LagKV's per-partition top-k and kvpress's LagKVPress do. Keys only: ilre stores no values at l_R, so
// LagKV's score_K + score_V becomes score_K (values would need the attention output of layer l_R).
class LagKvMethod : public Method {
 public:
  LagKvMethod(int64_t lag, bool cross) : lag_(lag), cross_(cross) {}
  std::string_view name() const override { return "lagkv"; }
  std::vector<int64_t> pick(const MethodInputs& in, std::vector<float>* /*unranked*/) const override {
    const std::vector<float> s =
        lagkv_scores(in.keys, in.n_doc, in.layout.n_head_kv, in.layout.head_dim, in.sink, lag_, cross_);
    return top_k(s, in.budget, in.sink, lagkv_tail(in.n_doc, in.sink, lag_));
  }
  nlohmann::json settings() const override {
    return {{"lag", lag_}, {"cross_scoring", cross_}, {"uses", "keys only"}};
  }

 private:
  int64_t lag_;
  bool cross_;
};

// StreamingLLM: the attention sinks and the most recent tokens; the middle is dropped unseen.
class StreamingMethod : public Method {
 public:
  std::string_view name() const override { return "streaming"; }
  bool needs_prefill() const override { return false; }
  std::vector<int64_t> pick(const MethodInputs& in, std::vector<float>* /*unranked*/) const override {
    const int64_t budget = std::min(in.budget, in.n_doc);
    const int64_t first = std::min(in.sink, budget);
    std::vector<int64_t> out(static_cast<size_t>(budget));
    std::iota(out.begin(), out.begin() + first, int64_t{0});
    std::iota(out.begin() + first, out.end(), in.n_doc - (budget - first));
    return out;
  }
  nlohmann::json settings() const override { return {{"keeps", "sink + most recent"}}; }
};

// The whole document through the full model: the reference the compressed methods approximate.
class FullMethod : public Method {
 public:
  std::string_view name() const override { return "full"; }
  bool needs_prefill() const override { return false; }
  bool full_context() const override { return true; }
  std::vector<int64_t> pick(const MethodInputs& in, std::vector<float>* /*unranked*/) const override {
    std::vector<int64_t> out(static_cast<size_t>(in.n_doc));
    std::iota(out.begin(), out.end(), int64_t{0});
    return out;
  }
  nlohmann::json settings() const override { return {{"keeps", "everything"}}; }
};

// σ of every token of one partition and one KV head, its keys normalised by the next partition's range.
void partition_sigma(std::span<const float> keys, int64_t width, int64_t head_off, int64_t head_dim, int64_t begin,
                     int64_t lag, std::vector<double>& sigma) {
  std::vector<float> mn(static_cast<size_t>(head_dim), INFINITY), mx(static_cast<size_t>(head_dim), -INFINITY);
  for (int64_t t = begin + lag; t < begin + 2 * lag; ++t) {  // the reference: the next partition
    const float* k = keys.data() + t * width + head_off;
    for (int64_t c = 0; c < head_dim; ++c) {
      mn[static_cast<size_t>(c)] = std::min(mn[static_cast<size_t>(c)], k[c]);
      mx[static_cast<size_t>(c)] = std::max(mx[static_cast<size_t>(c)], k[c]);
    }
  }
  sigma.assign(static_cast<size_t>(lag), 0.0);
  for (int64_t i = 0; i < lag; ++i) {
    const float* k = keys.data() + (begin + i) * width + head_off;
    double sum = 0, sum2 = 0;
    for (int64_t c = 0; c < head_dim; ++c) {
      // The reference code divides by zero on a constant channel; the epsilon keeps it finite.
      const double range = std::max(1e-6, static_cast<double>(mx[static_cast<size_t>(c)]) - mn[static_cast<size_t>(c)]);
      const double x = (k[c] - mn[static_cast<size_t>(c)]) / range;
      sum += x;
      sum2 += x * x;
    }
    const double mean = sum / static_cast<double>(head_dim);
    const double var = head_dim > 1 ? (sum2 - static_cast<double>(head_dim) * mean * mean) / static_cast<double>(head_dim - 1) : 0.0;
    sigma[static_cast<size_t>(i)] = std::sqrt(std::max(0.0, var));  // torch.std: unbiased
  }
}

void add_softmax(const std::vector<double>& x, float* out) {
  const double m = *std::max_element(x.begin(), x.end());
  double z = 0;
  for (double v : x) z += std::exp(v - m);
  for (size_t i = 0; i < x.size(); ++i) out[i] += static_cast<float>(std::exp(x[i] - m) / z);
}

// Ranks within a partition scaled to [0, 1): every partition then offers the same score levels.
void rank_normalise(float* s, int64_t lag) {
  std::vector<int64_t> order(static_cast<size_t>(lag));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [s](int64_t a, int64_t b) { return s[a] < s[b]; });
  for (int64_t r = 0; r < lag; ++r) s[order[static_cast<size_t>(r)]] = static_cast<float>(r) / static_cast<float>(lag);
}

}  // namespace

void validate(const MethodOptions& o) {
  for (int32_t k : {o.ilre_1kernel, o.snapkv_kernel, o.gemfilter_kernel}) {
    if (k < 1 || k % 2 == 0) throw Exception(errc::invalid_argument, "method kernels must be odd and >= 1, not " + std::to_string(k));
  }
  if (o.lagkv_lag < 2) throw Exception(errc::invalid_argument, "lagkv lag must be >= 2");
}

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names{"full", "streaming", "snapkv", "gemfilter", "lagkv", "ilre", "ilre-1kernel"};
  return names;
}

std::unique_ptr<Method> make_method(std::string_view name, const Config& cfg, const model::HParams& hp,
                                    const MethodOptions& o) {
  validate(o);
  if (name == "ilre") return std::make_unique<IlreMethod>("ilre", cfg, hp, 0);
  if (name == "ilre-1kernel") return std::make_unique<IlreMethod>("ilre-1kernel", cfg, hp, o.ilre_1kernel);
  if (name == "snapkv") return std::make_unique<SnapKvMethod>(hp, o.snapkv_kernel);
  if (name == "gemfilter") return std::make_unique<GemFilterMethod>(o.gemfilter_kernel);
  if (name == "lagkv") return std::make_unique<LagKvMethod>(o.lagkv_lag, o.lagkv_cross_scoring);
  if (name == "streaming") return std::make_unique<StreamingMethod>();
  if (name == "full") return std::make_unique<FullMethod>();
  std::string known;
  for (const std::string& n : method_names()) known += (known.empty() ? "" : ", ") + n;
  throw Exception(errc::invalid_argument, "unknown method '" + std::string(name) + "' (known: " + known + ")");
}

std::vector<float> avg_pool(std::span<const float> scores, int32_t kernel) {
  const auto n = static_cast<int64_t>(scores.size());
  const int64_t r = kernel / 2;
  std::vector<float> out(scores.size());
  double window = 0;  // sum of scores[i - r .. i + r] inside the array
  for (int64_t j = 0; j < std::min(n, r); ++j) window += scores[static_cast<size_t>(j)];
  for (int64_t i = 0; i < n; ++i) {
    if (i + r < n) window += scores[static_cast<size_t>(i + r)];
    if (i - r - 1 >= 0) window -= scores[static_cast<size_t>(i - r - 1)];
    out[static_cast<size_t>(i)] = static_cast<float>(window / kernel);
  }
  return out;
}

std::vector<int64_t> top_k(std::span<const float> scores, int64_t budget, int64_t keep_first, int64_t keep_last) {
  return retrieval::select_tokens(scores, single_kernel(1, budget, keep_first, keep_last));
}

std::vector<float> attention_scores(const MethodInputs& in, std::span<const float> q, int64_t n_q,
                                    const retrieval::ScoreConfig& cfg) {
  retrieval::QueryScorer scorer(q, n_q, in.layout, cfg);
  if (scorer.two_pass()) scorer.observe(in.keys.data(), in.n_doc);
  std::vector<float> s(static_cast<size_t>(in.n_doc));
  scorer.score(in.keys.data(), in.n_doc, s.data());
  return s;
}

int64_t lagkv_tail(int64_t n, int64_t sink, int64_t lag) {
  if (n <= sink) return 0;
  const int64_t partitions = (n - sink) / lag;
  // Scored partitions need a successor; the last full one and the remainder are the tail.
  return partitions < 2 ? n - sink : n - (sink + (partitions - 1) * lag);
}

std::vector<float> lagkv_scores(std::span<const float> keys, int64_t n, int64_t n_head_kv, int64_t head_dim,
                                int64_t sink, int64_t lag, bool cross_scoring) {
  const int64_t width = n_head_kv * head_dim;
  if (static_cast<int64_t>(keys.size()) < n * width) throw Exception(errc::invalid_argument, "lagkv: too few keys");
  std::vector<float> s(static_cast<size_t>(n), 0.0f);
  const int64_t scored_end = n - lagkv_tail(n, sink, lag);
  std::vector<double> sigma;
  for (int64_t begin = std::min(sink, n); begin + lag <= scored_end; begin += lag) {
    for (int64_t g = 0; g < n_head_kv; ++g) {
      partition_sigma(keys, width, g * head_dim, head_dim, begin, lag, sigma);
      add_softmax(sigma, s.data() + begin);  // heads share one token set: their scores add up
    }
    if (!cross_scoring) rank_normalise(s.data() + begin, lag);
  }
  return s;
}

}  // namespace ilre::eval
