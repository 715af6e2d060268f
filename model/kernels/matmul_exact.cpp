#include "model/kernels/matmul_exact.h"

#include <algorithm>
#include <vector>

#include "model/kernels/gemm.h"
#include "model/kernels/quant.h"

namespace ilre::model {
namespace {

// Output rows per task: a 64 x 2048 F32 panel (512 KiB) stays in L2 while the GEMM streams activations.
constexpr int64_t kPanelRows = 64;

}  // namespace

void matmul_exact(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t ldx, float* y, int64_t ldy,
                  ComputePool& pool) {
  const int64_t n_panels = (w.n_out + kPanelRows - 1) / kPanelRows;
  pool.parallel_for(n_panels, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> panel;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t o0 = p * kPanelRows;
      const int64_t rows = std::min(kPanelRows, w.n_out - o0);
      panel.resize(static_cast<size_t>(rows * w.n_in));
      for (int64_t r = 0; r < rows; ++r) {
        dequantize_row(w.type, w.data + static_cast<size_t>(o0 + r) * w.row_bytes, panel.data() + r * w.n_in,
                       w.n_in);
      }
      // y[:, o0 .. o0+rows) = x . panel^T, through the product built for this CPU (gemm.h).
      kernels::gemm_abt(n_tok, rows, w.n_in, x, ldx, panel.data(), w.n_in, y + o0, ldy);
    }
  });
}

}  // namespace ilre::model
