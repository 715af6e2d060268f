#include "model/kernels/matmul_exact.h"

#include <Eigen/Dense>

#include <algorithm>
#include <vector>

#include "model/kernels/quant.h"

namespace ilre::model {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstStrided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using Strided = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

// Output rows per task: a 64 x 2048 F32 panel (512 KiB) stays in L2 while the GEMM streams activations.
constexpr int64_t kPanelRows = 64;

}  // namespace

void matmul_exact(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t ldx, float* y, int64_t ldy,
                  ComputePool& pool) {
  const int64_t n_panels = (w.n_out + kPanelRows - 1) / kPanelRows;
  ConstStrided X(x, n_tok, w.n_in, Eigen::OuterStride<>(ldx));
  pool.parallel_for(n_panels, 1, [&](int64_t begin, int64_t end) {
    RowMat panel;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t o0 = p * kPanelRows;
      const int64_t rows = std::min(kPanelRows, w.n_out - o0);
      panel.resize(rows, w.n_in);
      for (int64_t r = 0; r < rows; ++r) {
        dequantize_row(w.type, w.data + static_cast<size_t>(o0 + r) * w.row_bytes, panel.row(r).data(), w.n_in);
      }
      Strided Y(y + o0, n_tok, rows, Eigen::OuterStride<>(ldy));
      Y.noalias() = X * panel.transpose();
    }
  });
}

}  // namespace ilre::model
