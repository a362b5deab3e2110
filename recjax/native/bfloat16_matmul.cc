// x @ w for float32 activations and bfloat16 weights, as an XLA FFI handler for the CPU backend:
// the fully connected layer of an MLP whose kernels are stored in bfloat16 (recjax/layers/mlp.py).
//
//   x     [B, K] float32
//   w     [K, N] bfloat16
//   out   [B, N] float32: out[b, n] = sum_k x[b, k] * float(w[k, n]), summed in float32
//
// Why: XLA:CPU (jaxlib 0.10) computes a dot of a bfloat16 kernel by first converting the whole
// kernel to a float32 copy, every call; at small batches the layer is a GEMV whose time is the
// time to read its weights, and that copy reads and writes three times the bytes the bfloat16
// kernel holds. Here each weight is read once, widened in registers (a bfloat16 is the top half
// of a float32) and multiplied into float32 sums.
//
// The N columns are split into blocks of kColumns; the caller thread and tasks on XLA's intra-op
// thread pool take blocks from one atomic counter. A block holds its sums for kRows rows of x at
// a time in a fixed-size array the compiler keeps in vector registers, and walks down the K rows
// of its columns (each a contiguous run of 2 x kColumns bytes).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kColumns = 64;       // columns per block: 4 AVX-512 vectors of float32
constexpr int64_t kRows = 4;           // rows of x summed at once
constexpr int64_t kMinBlocksPerTask = 2;

inline float Widen(uint16_t bfloat) {
  const uint32_t bits = static_cast<uint32_t>(bfloat) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// out[rows, columns) of one block: `width` columns from `first_column` (width <= kColumns),
// `count` rows from `first_row` (count <= kRows). kWidth and kCount > 0 fix them at compile time
// (the sums then live in vector registers); 0 reads them from `width` and `count`.
template <int64_t kWidth, int64_t kCount>
void Block(const float* x, const uint16_t* w, float* out, int64_t k_size, int64_t n_size,
           int64_t first_row, int64_t count_, int64_t first_column, int64_t width) {
  const int64_t columns = kWidth > 0 ? kWidth : width;
  const int64_t count = kCount > 0 ? kCount : count_;
  float sums[kRows][kColumns] = {};
  for (int64_t k = 0; k < k_size; ++k) {
    const uint16_t* weights = w + k * n_size + first_column;
    float wide[kColumns];
    for (int64_t c = 0; c < columns; ++c) wide[c] = Widen(weights[c]);
    for (int64_t r = 0; r < count; ++r) {
      const float input = x[(first_row + r) * k_size + k];
      for (int64_t c = 0; c < columns; ++c) sums[r][c] += input * wide[c];
    }
  }
  for (int64_t r = 0; r < count; ++r) {
    std::copy(sums[r], sums[r] + columns, out + (first_row + r) * n_size + first_column);
  }
}

struct SharedWork {
  const float* x;
  const uint16_t* w;
  float* out;
  int64_t batch, k_size, n_size, blocks;
  std::atomic<int64_t> next_block{0};
  std::atomic<int64_t> finished_blocks{0};

  void RunBlock(int64_t block) const {
    const int64_t first_column = block * kColumns;
    const int64_t width = std::min(kColumns, n_size - first_column);
    for (int64_t first_row = 0; first_row < batch; first_row += kRows) {
      const int64_t count = std::min(kRows, batch - first_row);
      if (width == kColumns && count == kRows) {
        Block<kColumns, kRows>(x, w, out, k_size, n_size, first_row, count, first_column, width);
      } else if (width == kColumns && count == 1) {
        Block<kColumns, 1>(x, w, out, k_size, n_size, first_row, count, first_column, width);
      } else {
        Block<0, 0>(x, w, out, k_size, n_size, first_row, count, first_column, width);
      }
    }
  }

  void Run() {
    for (int64_t block = next_block.fetch_add(1); block < blocks;
         block = next_block.fetch_add(1)) {
      RunBlock(block);
      finished_blocks.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error Bfloat16Matmul(ffi::ThreadPool thread_pool, ffi::Buffer<ffi::F32> x,
                          ffi::Buffer<ffi::BF16> w, ffi::ResultBuffer<ffi::F32> out) {
  const auto x_dims = x.dimensions();
  const auto w_dims = w.dimensions();
  const auto out_dims = out->dimensions();
  if (x_dims.size() != 2 || w_dims.size() != 2 || out_dims.size() != 2 ||
      x_dims[1] != w_dims[0] || out_dims[0] != x_dims[0] || out_dims[1] != w_dims[1]) {
    return ffi::Error::InvalidArgument("expected x [B, K], w [K, N] and out [B, N]");
  }
  auto work = std::make_shared<SharedWork>();
  work->x = x.typed_data();
  work->w = reinterpret_cast<const uint16_t*>(w.untyped_data());
  work->out = out->typed_data();
  work->batch = x_dims[0];
  work->k_size = x_dims[1];
  work->n_size = w_dims[1];
  work->blocks = (work->n_size + kColumns - 1) / kColumns;
  if (work->batch == 0 || work->blocks == 0) return ffi::Error::Success();

  const int64_t threads = std::max<int64_t>(1, thread_pool.num_threads());
  const int64_t helpers =
      std::min(threads, std::max<int64_t>(1, work->blocks / kMinBlocksPerTask)) - 1;
  for (int64_t i = 0; i < helpers; ++i) {
    thread_pool.Schedule([work] { work->Run(); });
  }
  work->Run();
  while (work->finished_blocks.load(std::memory_order_acquire) < work->blocks) {
    __builtin_ia32_pause();
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RecjaxBfloat16Matmul, Bfloat16Matmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
