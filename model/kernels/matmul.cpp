// matmul(): quantise every activation row once, then run register tiles over (weight rows x tokens).
//
// 1. The n_tok activation rows are rounded/quantised into the kernel's prepared layout (see
//    quant_kernels_avx2.cpp) in a grow-only buffer owned by the calling thread; the pool's workers only
//    read it during the call. So matmul() may run concurrently from different threads (each with its own
//    pool), but must not be re-entered from inside a job of the pool it is given.
// 2. Output rows are split into chunks handed out dynamically over the pool. Within a chunk the tokens
//    are taken in L2-sized blocks and each register tile (max_rows weight rows x max_cols tokens) runs
//    over the whole row length. For prefill the chunk's rows are first packed into a per-thread buffer
//    when the format has a costly decode. Every output is computed by the same operations whatever the
//    chunking, so results are bitwise identical for any thread count and equal to vec_dot().
#include "model/kernels/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "ilre/error.h"
#include "model/kernels/quant.h"
#include "model/kernels/quant_kernels.h"

namespace ilre::model {
namespace {

// Grow-only 64-byte aligned buffer: the prepared activations live here between calls so that the hot path
// does not allocate.
class Scratch {
 public:
  uint8_t* get(size_t bytes) {
    if (bytes > size_) {
      size_ = std::max(bytes, size_ + size_ / 2);
      data_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (size_ + 63) / 64 * 64)));
      if (!data_) throw std::bad_alloc();
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
};

void check_shapes(const WeightMatrix& w, int64_t n_tok, int64_t ldx, int64_t ldy) {
  const auto row = ggml_row_bytes(w.type, w.n_in);
  if (!row || w.n_out < 0 || n_tok < 0 || ldx < w.n_in || ldy < w.n_out || w.row_bytes < *row ||
      (w.data == nullptr && w.n_out > 0)) {
    throw Exception(errc::invalid_argument,
                    "matmul: bad shapes (type " + std::string(ggml_type_name(w.type)) + ", n_in " +
                        std::to_string(w.n_in) + ", n_out " + std::to_string(w.n_out) + ", n_tok " +
                        std::to_string(n_tok) + ", ldx " + std::to_string(ldx) + ", ldy " + std::to_string(ldy) +
                        ", row_bytes " + std::to_string(w.row_bytes) + ")");
  }
}

// Tokens handled per pass over a chunk of weight rows: their prepared activations (a_stride bytes each)
// should stay in the L2 cache (512 KB per core on Zen 3) next to the chunk's weights while the tiles run.
int64_t token_block(size_t a_stride, int max_cols) {
  constexpr size_t kL2Budget = 192 * 1024;
  const int64_t t = static_cast<int64_t>(kL2Budget / std::max<size_t>(a_stride, 1));
  return std::max<int64_t>(max_cols, t / max_cols * max_cols);
}

}  // namespace

void matmul(const WeightMatrix& w, const float* x, int64_t n_tok, int64_t ldx, float* y, int64_t ldy,
            ComputePool& pool) {
  check_shapes(w, n_tok, ldx, ldy);
  if (n_tok == 0 || w.n_out == 0) return;
  const kernels::MatmulKernel& k = kernels::matmul_kernel(w.type, w.n_in, n_tok);
  const int64_t n_in = w.n_in;
  const size_t a_stride = k.act_bytes(n_in);

  // The calling thread owns the prepared activations; pool workers only read them during this call.
  thread_local Scratch scratch;
  uint8_t* act = scratch.get(a_stride * static_cast<size_t>(n_tok));

  const auto prepare = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) k.prepare(x + t * ldx, act + static_cast<size_t>(t) * a_stride, n_in);
  };
  // Quantising a few rows takes microseconds: cheaper here than a fork-join of the pool.
  constexpr int64_t kSerialPrepareElements = 16384;
  if (n_tok * n_in <= kSerialPrepareElements) prepare(0, n_tok);
  else pool.parallel_for(n_tok, 1, prepare);

  const int64_t mr = k.max_rows;
  const int64_t mc = k.max_cols;
  const int64_t t_block = token_block(a_stride, k.max_cols);
  // Row chunks: a multiple of the register tile, small enough that every thread gets several.
  const int64_t n_threads = pool.size();
  int64_t rows_per_chunk = (w.n_out + n_threads * 8 - 1) / (n_threads * 8);
  rows_per_chunk = std::clamp<int64_t>((rows_per_chunk + mr - 1) / mr * mr, mr, n_tok == 1 ? 512 : 64);
  const int64_t n_chunks = (w.n_out + rows_per_chunk - 1) / rows_per_chunk;

  // Packing decodes each weight block once per call instead of once per group of max_cols tokens.
  const bool pack = k.pack_rows != nullptr && n_tok >= 2 * mc;
  const size_t packed_stride = pack ? k.packed_row_bytes(n_in) : 0;

  pool.parallel_for(n_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    thread_local Scratch packed;
    for (int64_t chunk = c_begin; chunk < c_end; ++chunk) {
      const int64_t r0 = chunk * rows_per_chunk;
      const int64_t r1 = std::min(w.n_out, r0 + rows_per_chunk);
      const uint8_t* rows = w.data + static_cast<size_t>(r0) * w.row_bytes;
      size_t stride = w.row_bytes;
      auto* tile = k.tile;
      if (pack) {
        uint8_t* buf = packed.get(packed_stride * static_cast<size_t>(r1 - r0));
        k.pack_rows(n_in, rows, w.row_bytes, static_cast<int>(r1 - r0), buf);
        rows = buf;
        stride = packed_stride;
        tile = k.packed_tile;
      }
      for (int64_t t0 = 0; t0 < n_tok; t0 += t_block) {
        const int64_t t1 = std::min(n_tok, t0 + t_block);
        for (int64_t r = r0; r < r1; r += mr) {
          const int nr = static_cast<int>(std::min(mr, r1 - r));
          const uint8_t* wr = rows + static_cast<size_t>(r - r0) * stride;
          for (int64_t t = t0; t < t1; t += mc) {
            const int nc = static_cast<int>(std::min(mc, t1 - t));
            tile(n_in, wr, stride, nr, act + static_cast<size_t>(t) * a_stride, a_stride, nc, y + t * ldy + r, ldy);
          }
        }
      }
    }
  });
}

void weight_row(const WeightMatrix& w, int64_t r, float* out) {
  if (r < 0 || r >= w.n_out) {
    throw Exception(errc::out_of_range, "weight_row: row " + std::to_string(r) + " of " + std::to_string(w.n_out));
  }
  dequantize_row(w.type, w.data + static_cast<size_t>(r) * w.row_bytes, out, w.n_in);
}

}  // namespace ilre::model
