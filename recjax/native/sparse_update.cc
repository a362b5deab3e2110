// The sparse steps of embedding training, in place, as XLA FFI handlers for the CPU backend.
//
// SparseRowUpdate (SGD): add scaled lookup gradients into the looked-up rows of a table.
//
//   table    [N, D] float32, aliased with the result (the caller donates it)
//   rows     [B, T, C] int32: rows of `table` (offsets added), clamped to [0, N) here too
//   factors  [B, T, C] float32: d(output)/d(row) of each lookup (0 at padding)
//   grads    [B, T, D] float32 (pooled: one gradient per bag) or [B, T, C, D] (one per position)
//   scale    [] float32: the step, -learning_rate
//   result   [N, D] float32: table[rows[b, t, c]] += scale * factors[b, t, c] * grad(b, t, c)
//
// Repeated rows sum, as in the dense gradient. Threads own disjoint row ranges: each scans every
// lookup in (b, t, c) order and applies those whose row is its own, so each row's updates are
// applied by one thread in one fixed order: no atomics, and the result is the same bitwise from
// run to run. The caller thread and tasks on XLA's intra-op thread pool share the ranges.
//
// SparseRowwiseAdagrad: FBGEMM's row-wise Adagrad on the looked-up rows, with the same inputs plus
//
//   accumulator  [N] float32, aliased with the second result
//   epsilon      [] float32
//
// and `scale` = the learning rate. With g_r the sum of row r's lookup gradients in the call:
//   a_r += mean_d(g_r[d]^2);  table[r] -= lr * g_r / (sqrt(a_r) + epsilon)
// Each thread sums its rows' gradients in (b, t, c) order into a scratch of the rows it saw (a
// row's first lookup gives it a slot; an int per row of its range finds the slot), then steps
// each of those rows once. No sort: the work is O(lookups x D) plus an int per table row.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <memory>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kPrefetchDistance = 16;  // lookups ahead
constexpr int64_t kCacheLineBytes = 64;
constexpr int64_t kMinRowsPerPart = 4096;  // fewer rows per thread than this: fewer threads

// Work split into `parts` contiguous row ranges, taken by whichever thread is free.
struct RowRangeWork {
  int64_t num_rows = 0, parts = 1;
  std::atomic<int64_t> next_part{0};
  std::atomic<int64_t> finished_parts{0};

  virtual ~RowRangeWork() = default;
  virtual void UpdatePart(int64_t part) const = 0;

  void Run() {
    for (int64_t part = next_part.fetch_add(1); part < parts; part = next_part.fetch_add(1)) {
      UpdatePart(part);
      finished_parts.fetch_add(1, std::memory_order_release);
    }
  }
};

// Runs `work` on the caller thread and XLA's intra-op pool (one part per thread, fewer for small
// tables) and returns when every part is done.
void RunOnThreads(ffi::ThreadPool& thread_pool, std::shared_ptr<RowRangeWork> work) {
  const int64_t threads = std::max<int64_t>(1, thread_pool.num_threads());
  work->parts = std::max<int64_t>(1, std::min(threads, work->num_rows / kMinRowsPerPart));
  for (int64_t i = 0; i < work->parts - 1; ++i) {
    thread_pool.Schedule([work] { work->Run(); });
  }
  work->Run();
  while (work->finished_parts.load(std::memory_order_acquire) < work->parts) {
    __builtin_ia32_pause();
  }
}

struct UpdateWork : RowRangeWork {
  float* table;
  int64_t dim, lookups, capacity;
  const int32_t* rows;
  const float* factors;
  const float* grads;
  bool pooled;
  float scale;

  const float* GradOf(int64_t lookup) const {
    return grads + (pooled ? lookup / capacity : lookup) * dim;
  }

  void UpdatePart(int64_t part) const override {
    const int64_t first = num_rows * part / parts;
    const int64_t last = num_rows * (part + 1) / parts;
    const int64_t row_bytes = dim * static_cast<int64_t>(sizeof(float));
    for (int64_t i = 0; i < lookups; ++i) {
      if (i + kPrefetchDistance < lookups) {
        const int64_t ahead = std::clamp<int64_t>(rows[i + kPrefetchDistance], 0, num_rows - 1);
        if (ahead >= first && ahead < last) {
          const char* bytes = reinterpret_cast<const char*>(table + ahead * dim);
          for (int64_t offset = 0; offset < row_bytes; offset += kCacheLineBytes) {
            __builtin_prefetch(bytes + offset, /*rw=*/1, /*locality=*/3);
          }
        }
      }
      const int64_t row = std::clamp<int64_t>(rows[i], 0, num_rows - 1);
      if (row < first || row >= last) continue;
      const float step = scale * factors[i];
      if (step == 0.0f) continue;
      float* target = table + row * dim;
      const float* grad = GradOf(i);
      for (int64_t d = 0; d < dim; ++d) target[d] += step * grad[d];
    }
  }
};

// Checks the shapes shared by both steps; sets the counts. An empty message: all is well.
const char* CheckLookups(ffi::Buffer<ffi::F32>& table, ffi::Buffer<ffi::S32>& rows,
                         ffi::Buffer<ffi::F32>& factors, ffi::Buffer<ffi::F32>& grads,
                         int64_t& num_rows, int64_t& dim, int64_t& bags, int64_t& capacity,
                         bool& pooled) {
  const auto table_dims = table.dimensions();
  const auto row_dims = rows.dimensions();
  const auto grad_dims = grads.dimensions();
  if (table_dims.size() != 2 || row_dims.size() != 3) {
    return "expected table [N, D] and rows [B, T, C]";
  }
  num_rows = table_dims[0];
  dim = table_dims[1];
  bags = row_dims[0] * row_dims[1];
  capacity = row_dims[2];
  pooled = grad_dims.size() == 3;
  if (factors.element_count() != rows.element_count() ||
      (pooled && (grad_dims[0] * grad_dims[1] != bags || grad_dims[2] != dim)) ||
      (!pooled && (grad_dims.size() != 4 || grad_dims[0] * grad_dims[1] != bags ||
                   grad_dims[2] != capacity || grad_dims[3] != dim))) {
    return "expected factors [B, T, C] and grads [B, T, D] or [B, T, C, D]";
  }
  return "";
}

// Copies `from` into `to` unless they are one buffer (the caller donated it).
void CopyUnlessAliased(float* to, const float* from, int64_t count) {
  if (to != from) std::memcpy(to, from, count * sizeof(float));
}

ffi::Error SparseRowUpdate(ffi::ThreadPool thread_pool, ffi::Buffer<ffi::F32> table,
                           ffi::Buffer<ffi::S32> rows, ffi::Buffer<ffi::F32> factors,
                           ffi::Buffer<ffi::F32> grads, ffi::Buffer<ffi::F32> scale,
                           ffi::ResultBuffer<ffi::F32> result) {
  int64_t num_rows, dim, bags, capacity;
  bool pooled;
  const char* problem =
      CheckLookups(table, rows, factors, grads, num_rows, dim, bags, capacity, pooled);
  if (*problem) return ffi::Error::InvalidArgument(problem);
  if (scale.element_count() != 1) return ffi::Error::InvalidArgument("expected a scalar scale");
  if (result->element_count() != table.element_count()) {
    return ffi::Error::InvalidArgument("expected the result shaped like the table");
  }
  float* out = result->typed_data();
  CopyUnlessAliased(out, table.typed_data(), table.element_count());
  if (num_rows == 0 || bags * capacity == 0) return ffi::Error::Success();

  auto work = std::make_shared<UpdateWork>();
  work->table = out;
  work->num_rows = num_rows;
  work->dim = dim;
  work->lookups = bags * capacity;
  work->capacity = capacity;
  work->rows = rows.typed_data();
  work->factors = factors.typed_data();
  work->grads = grads.typed_data();
  work->pooled = pooled;
  work->scale = scale.typed_data()[0];
  RunOnThreads(thread_pool, work);
  return ffi::Error::Success();
}

struct AdagradWork : RowRangeWork {
  float* table;
  float* accumulator;
  int64_t dim, lookups, capacity;
  const int32_t* rows;
  const float* factors;
  const float* grads;
  bool pooled;
  float learning_rate, epsilon;

  const float* GradOf(int64_t lookup) const {
    return grads + (pooled ? lookup / capacity : lookup) * dim;
  }

  void UpdatePart(int64_t part) const override {
    const int64_t first = num_rows * part / parts;
    const int64_t last = num_rows * (part + 1) / parts;
    std::vector<int32_t> slot_of(last - first, -1);  // row - first -> its slot, -1: not seen
    std::vector<int64_t> seen_rows;                  // slot -> row
    std::vector<float> sums;                         // [slots, D] summed gradients
    for (int64_t i = 0; i < lookups; ++i) {
      const int64_t row = std::clamp<int64_t>(rows[i], 0, num_rows - 1);
      if (row < first || row >= last || factors[i] == 0.0f) continue;
      int32_t& slot = slot_of[row - first];
      if (slot < 0) {
        slot = static_cast<int32_t>(seen_rows.size());
        seen_rows.push_back(row);
        sums.resize(sums.size() + dim, 0.0f);
      }
      float* sum = sums.data() + static_cast<int64_t>(slot) * dim;
      const float factor = factors[i];
      const float* grad = GradOf(i);
      for (int64_t d = 0; d < dim; ++d) sum[d] += factor * grad[d];
    }
    for (size_t slot = 0; slot < seen_rows.size(); ++slot) {
      const int64_t row = seen_rows[slot];
      const float* sum = sums.data() + slot * dim;
      float squares = 0.0f;
      for (int64_t d = 0; d < dim; ++d) squares += sum[d] * sum[d];
      const float total = accumulator[row] + squares / static_cast<float>(dim);
      accumulator[row] = total;
      const float root = std::sqrt(total) + epsilon;
      if (root == 0.0f) continue;  // epsilon 0 and all of the row's gradients 0: no step
      const float step = -learning_rate / root;
      float* target = table + row * dim;
      for (int64_t d = 0; d < dim; ++d) target[d] += step * sum[d];
    }
  }
};

ffi::Error SparseRowwiseAdagrad(ffi::ThreadPool thread_pool, ffi::Buffer<ffi::F32> table,
                                ffi::Buffer<ffi::F32> accumulator, ffi::Buffer<ffi::S32> rows,
                                ffi::Buffer<ffi::F32> factors, ffi::Buffer<ffi::F32> grads,
                                ffi::Buffer<ffi::F32> learning_rate,
                                ffi::Buffer<ffi::F32> epsilon,
                                ffi::ResultBuffer<ffi::F32> table_out,
                                ffi::ResultBuffer<ffi::F32> accumulator_out) {
  int64_t num_rows, dim, bags, capacity;
  bool pooled;
  const char* problem =
      CheckLookups(table, rows, factors, grads, num_rows, dim, bags, capacity, pooled);
  if (*problem) return ffi::Error::InvalidArgument(problem);
  if (accumulator.element_count() != num_rows ||
      accumulator_out->element_count() != num_rows ||
      table_out->element_count() != table.element_count()) {
    return ffi::Error::InvalidArgument("expected an accumulator [N] and results like the inputs");
  }
  if (learning_rate.element_count() != 1 || epsilon.element_count() != 1) {
    return ffi::Error::InvalidArgument("expected a scalar learning rate and epsilon");
  }
  CopyUnlessAliased(table_out->typed_data(), table.typed_data(), table.element_count());
  CopyUnlessAliased(accumulator_out->typed_data(), accumulator.typed_data(), num_rows);
  if (num_rows == 0 || bags * capacity == 0) return ffi::Error::Success();

  auto work = std::make_shared<AdagradWork>();
  work->table = table_out->typed_data();
  work->accumulator = accumulator_out->typed_data();
  work->num_rows = num_rows;
  work->dim = dim;
  work->lookups = bags * capacity;
  work->capacity = capacity;
  work->rows = rows.typed_data();
  work->factors = factors.typed_data();
  work->grads = grads.typed_data();
  work->pooled = pooled;
  work->learning_rate = learning_rate.typed_data()[0];
  work->epsilon = epsilon.typed_data()[0];
  RunOnThreads(thread_pool, work);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RecjaxSparseRowwiseAdagrad, SparseRowwiseAdagrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(RecjaxSparseRowUpdate, SparseRowUpdate,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
