#include "retrieval/pooling.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <numeric>
#include <string>
#include <unordered_map>

#include "ilre/error.h"

namespace ilre::retrieval {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Higher score first; on equal scores the earlier token, so every selection is deterministic.
bool better(float a_score, int64_t a_index, float b_score, int64_t b_index) {
  return a_score > b_score || (a_score == b_score && a_index < b_index);
}

float clean(float s) { return std::isnan(s) ? kNegInf : s; }

// Splits `total` tokens between kernels in proportion to their shares; the rounding remainder goes to the
// kernels with the largest fractional parts (earlier kernels first on ties), so quotas sum to total exactly.
std::vector<int64_t> quotas(const std::vector<KernelShare>& kernels, int64_t total) {
  std::vector<int64_t> q(kernels.size());
  std::vector<std::pair<double, size_t>> frac;
  int64_t given = 0;
  for (size_t t = 0; t < kernels.size(); ++t) {
    const double exact = kernels[t].share * static_cast<double>(total);
    q[t] = static_cast<int64_t>(std::floor(exact));
    given += q[t];
    frac.emplace_back(exact - std::floor(exact), t);
  }
  std::stable_sort(frac.begin(), frac.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; given < total && i < frac.size(); ++i, ++given) ++q[frac[i].second];
  return q;
}

constexpr float kPosInf = std::numeric_limits<float>::infinity();

// Recalled so far (O(budget), never O(document)), each with the score that admitted it.
using Selected = std::unordered_map<int64_t, float>;

struct Plan {
  Selected selected;
  std::vector<int64_t> quota;   // per kernel
  bool done = false;            // everything (or only always-kept tokens) fits the budget
};

// Marks the always-kept tokens and splits the rest of the budget between kernels.
Plan plan_selection(const SelectionConfig& cfg, int64_t n) {
  Plan p;
  if (n <= cfg.budget) {
    for (int64_t i = 0; i < n; ++i) p.selected.emplace(i, kPosInf);
    p.done = true;
    return p;
  }
  auto keep = [&](int64_t i) {
    if (static_cast<int64_t>(p.selected.size()) < cfg.budget) p.selected.emplace(i, kPosInf);
  };
  for (int64_t i = 0; i < std::min(cfg.keep_first, n); ++i) keep(i);
  for (int64_t i = std::max<int64_t>(0, n - cfg.keep_last); i < n; ++i) keep(i);
  p.quota = quotas(cfg.kernels, cfg.budget - static_cast<int64_t>(p.selected.size()));
  return p;
}

// Spends one kernel's quota from candidates ranked best first.
void spend(const SelectionConfig& cfg, int32_t kernel, const std::vector<std::pair<float, int64_t>>& ranked,
           int64_t quota, int64_t n, Selected& selected) {
  int64_t taken = 0;
  for (const auto& [score, center] : ranked) {
    if (taken >= quota) return;
    const int64_t r = cfg.mode == SelectionMode::pooled_topk ? 0 : kernel / 2;
    for (int64_t i = std::max<int64_t>(0, center - r); i <= std::min(n - 1, center + r) && taken < quota; ++i) {
      if (selected.emplace(i, score).second) ++taken;
    }
  }
}

std::vector<int64_t> indices_of(const Selected& selected, std::vector<float>* relevance) {
  std::vector<int64_t> out;
  out.reserve(selected.size());
  for (const auto& [i, score] : selected) out.push_back(i);
  std::sort(out.begin(), out.end());
  if (relevance) {
    relevance->clear();
    for (int64_t i : out) relevance->push_back(selected.at(i));
  }
  return out;
}

}  // namespace

void validate(const SelectionConfig& cfg) {
  if (cfg.kernels.empty()) throw Exception(errc::invalid_argument, "pooling: at least one kernel is needed");
  double sum = 0.0;
  for (const KernelShare& k : cfg.kernels) {
    if (k.size < 1 || k.size % 2 == 0) {
      throw Exception(errc::invalid_argument, "pooling: kernel size " + std::to_string(k.size) + " must be odd and >= 1");
    }
    if (!(k.share > 0.0)) throw Exception(errc::invalid_argument, "pooling: kernel shares must be > 0");
    sum += k.share;
  }
  if (std::fabs(sum - 1.0) > 1e-6) {
    throw Exception(errc::invalid_argument, "pooling: kernel shares sum to " + std::to_string(sum) + ", not 1");
  }
  if (cfg.budget < 0 || cfg.keep_first < 0 || cfg.keep_last < 0) {
    throw Exception(errc::invalid_argument, "pooling: budget and kept counts must be >= 0");
  }
}

std::vector<float> max_pool(std::span<const float> scores, int32_t kernel) {
  const auto n = static_cast<int64_t>(scores.size());
  const int64_t r = kernel / 2;
  std::vector<float> out(static_cast<size_t>(n));
  std::deque<int64_t> window;  // indices with decreasing scores: the front is the window's maximum
  int64_t next = 0;            // next index to enter the window
  for (int64_t i = 0; i < n; ++i) {
    for (; next <= std::min(n - 1, i + r); ++next) {
      const float v = clean(scores[static_cast<size_t>(next)]);
      while (!window.empty() && clean(scores[static_cast<size_t>(window.back())]) <= v) window.pop_back();
      window.push_back(next);
    }
    while (window.front() < i - r) window.pop_front();
    out[static_cast<size_t>(i)] = clean(scores[static_cast<size_t>(window.front())]);
  }
  return out;
}

std::vector<int64_t> select_tokens(std::span<const float> scores, const SelectionConfig& cfg,
                                   std::vector<float>* relevance) {
  validate(cfg);
  const auto n = static_cast<int64_t>(scores.size());
  Plan plan = plan_selection(cfg, n);
  if (plan.done) return indices_of(plan.selected, relevance);
  for (size_t t = 0; t < cfg.kernels.size(); ++t) {
    const int32_t k = cfg.kernels[t].size;
    const std::vector<float> ranked_scores =
        cfg.mode == SelectionMode::pooled_topk ? max_pool(scores, k) : max_pool(scores, 1);
    std::vector<std::pair<float, int64_t>> ranked(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ranked[static_cast<size_t>(i)] = {ranked_scores[static_cast<size_t>(i)], i};
    // Only the first quota + already-selected candidates can be needed: a partial sort suffices.
    const auto need = static_cast<size_t>(std::min<int64_t>(n, cfg.budget + 1) +
                                          (cfg.mode == SelectionMode::expand_center ? cfg.budget : 0));
    const auto mid = ranked.begin() + static_cast<std::ptrdiff_t>(std::min(need, ranked.size()));
    std::partial_sort(ranked.begin(), mid, ranked.end(),
                      [](const auto& a, const auto& b) { return better(a.first, a.second, b.first, b.second); });
    ranked.erase(mid, ranked.end());
    spend(cfg, k, ranked, plan.quota[t], n, plan.selected);
  }
  return indices_of(plan.selected, relevance);
}

// ---------------------------------------------------------------------------------------------------------

StreamingSelector::StreamingSelector(SelectionConfig cfg) : cfg_(std::move(cfg)) {
  validate(cfg_);
  heaps_.resize(cfg_.kernels.size());
  // A kernel can need every already-selected token plus its own quota (pooled_topk: <= budget candidates);
  // expand_center can also meet up to `budget` fully covered centres.
  heap_cap_ = static_cast<size_t>(cfg_.budget + 1 + (cfg_.mode == SelectionMode::expand_center ? cfg_.budget : 0));
}

void StreamingSelector::push_candidate(size_t kernel, float score, int64_t index) {
  auto& h = heaps_[kernel];
  // Min-heap on "better": the top is the worst candidate kept.
  auto cmp = [](const Candidate& a, const Candidate& b) { return better(a.score, a.index, b.score, b.index); };
  if (h.size() < heap_cap_) {
    h.push_back({score, index});
    std::push_heap(h.begin(), h.end(), cmp);
  } else if (!h.empty() && better(score, index, h.front().score, h.front().index)) {
    std::pop_heap(h.begin(), h.end(), cmp);
    h.back() = {score, index};
    std::push_heap(h.begin(), h.end(), cmp);
  }
}

void StreamingSelector::pool_ready(bool final) {
  int32_t r_max = 0;
  for (const KernelShare& k : cfg_.kernels) r_max = std::max(r_max, k.size / 2);
  // Positions whose every pooling window lies inside what has been received are final.
  const int64_t ready_end = final ? n_ : std::max<int64_t>(pooled_, n_ - r_max);
  if (ready_end <= pooled_) return;
  for (size_t t = 0; t < cfg_.kernels.size(); ++t) {
    const int32_t k = cfg_.mode == SelectionMode::pooled_topk ? cfg_.kernels[t].size : 1;
    const int64_t r = k / 2;
    const int64_t lo = std::max(window_start_, pooled_ - r);
    const int64_t hi = std::min(n_, ready_end + r);
    const std::span<const float> slice(window_.data() + (lo - window_start_), static_cast<size_t>(hi - lo));
    const std::vector<float> pooled = max_pool(slice, k);
    for (int64_t i = pooled_; i < ready_end; ++i) push_candidate(t, pooled[static_cast<size_t>(i - lo)], i);
  }
  pooled_ = ready_end;
  // Keep only the scores a future window can still reach.
  const int64_t keep_from = std::max(window_start_, pooled_ - r_max);
  window_.erase(window_.begin(), window_.begin() + (keep_from - window_start_));
  window_start_ = keep_from;
}

void StreamingSelector::add(std::span<const float> block) {
  for (float s : block) window_.push_back(clean(s));
  n_ += static_cast<int64_t>(block.size());
  pool_ready(false);
}

std::vector<int64_t> StreamingSelector::finish(std::vector<float>* relevance) {
  pool_ready(true);
  Plan plan = plan_selection(cfg_, n_);
  if (plan.done) return indices_of(plan.selected, relevance);
  for (size_t t = 0; t < cfg_.kernels.size(); ++t) {
    std::vector<std::pair<float, int64_t>> ranked;
    ranked.reserve(heaps_[t].size());
    for (const Candidate& c : heaps_[t]) ranked.emplace_back(c.score, c.index);
    std::sort(ranked.begin(), ranked.end(),
              [](const auto& a, const auto& b) { return better(a.first, a.second, b.first, b.second); });
    spend(cfg_, cfg_.kernels[t].size, ranked, plan.quota[t], n_, plan.selected);
  }
  return indices_of(plan.selected, relevance);
}

}  // namespace ilre::retrieval
