// Multi-kernel max pooling and budgeted token selection (ILRe §1.5).
//
// Scores are smoothed with several max-pooling kernels that share the recall budget: large kernels spread a
// peak to its neighbours and so recall whole passages, small kernels recall exact needles. Selection works in
// a stream of score blocks with memory bounded by the budget, never by the document length.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ilre::retrieval {

// How a kernel's budget share is spent.
enum class SelectionMode {
  pooled_topk,    // top tokens of the max-pooled scores (the method doc's reference algorithm)
  expand_center,  // top tokens of the raw scores, each expanded to its whole kernel window
};

struct KernelShare {
  int32_t size = 1;     // odd pooling width
  double share = 1.0;   // fraction of the budget left after the always-kept tokens
};

struct SelectionConfig {
  std::vector<KernelShare> kernels{{1, 0.25}, {7, 0.25}, {31, 0.25}, {127, 0.25}};  // pooling.kernels' default
  SelectionMode mode = SelectionMode::pooled_topk;
  int64_t budget = 0;       // total tokens to recall, always-kept ones included
  int64_t keep_first = 0;   // sink: the first tokens of the document are always recalled
  int64_t keep_last = 0;    // the last tokens of the document are always recalled
};

// Checks kernel sizes (odd, >= 1), shares (> 0, summing to 1 within 1e-6), budget >= 0.
void validate(const SelectionConfig& cfg);

// out[i] = max(s[i - k/2 .. i + k/2]) with out-of-range positions ignored. O(n) (monotonic deque).
std::vector<float> max_pool(std::span<const float> scores, int32_t kernel);

// Whole-array selection: the sorted indices (original order) of the recalled tokens.
// n <= budget recalls everything. relevance, when given, receives for each index the score that won it its
// place: the (pooled) score of the kernel candidate that selected it, +inf for always-kept tokens and for
// everything when the whole document fits.
std::vector<int64_t> select_tokens(std::span<const float> scores, const SelectionConfig& cfg,
                                   std::vector<float>* relevance = nullptr);

// The same selection fed block by block (consecutive, any sizes): keeps a (budget + keep_first + 1)-entry
// candidate heap per kernel and a kernel-wide halo of scores, so memory is O(kernels x budget) whatever the
// document length. finish() gives exactly select_tokens() of the concatenated blocks.
class StreamingSelector {
 public:
  explicit StreamingSelector(SelectionConfig cfg);
  void add(std::span<const float> block);
  std::vector<int64_t> finish(std::vector<float>* relevance = nullptr);
  int64_t consumed() const { return n_; }

 private:
  struct Candidate {
    float score;
    int64_t index;
  };
  void push_candidate(size_t kernel, float score, int64_t index);
  void pool_ready(bool final);

  SelectionConfig cfg_;
  int64_t n_ = 0;                 // scores received
  int64_t pooled_ = 0;            // positions whose pooled values are final
  int64_t window_start_ = 0;      // index of window_[0]
  std::vector<float> window_;     // raw scores still needed by some kernel's pooling window
  std::vector<std::vector<Candidate>> heaps_;  // per kernel: min-heap of the best pooled scores
  size_t heap_cap_;
};

}  // namespace ilre::retrieval
