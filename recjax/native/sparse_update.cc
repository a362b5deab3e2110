// The sparse SGD step of embedding training: add scaled lookup gradients into the looked-up rows of
// a table, in place, as an XLA FFI handler for the CPU backend.
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

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kPrefetchDistance = 16;  // lookups ahead
constexpr int64_t kCacheLineBytes = 64;
constexpr int64_t kMinRowsPerPart = 4096;  // fewer rows per thread than this: fewer threads

struct UpdateWork {
  float* table;
  int64_t num_rows, dim, lookups, capacity, parts;
  const int32_t* rows;
  const float* factors;
  const float* grads;
  bool pooled;
  float scale;
  std::atomic<int64_t> next_part{0};
  std::atomic<int64_t> finished_parts{0};

  const float* GradOf(int64_t lookup) const {
    return grads + (pooled ? lookup / capacity : lookup) * dim;
  }

  void UpdatePart(int64_t part) const {
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

  void Run() {
    for (int64_t part = next_part.fetch_add(1); part < parts; part = next_part.fetch_add(1)) {
      UpdatePart(part);
      finished_parts.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error SparseRowUpdate(ffi::ThreadPool thread_pool, ffi::Buffer<ffi::F32> table,
                           ffi::Buffer<ffi::S32> rows, ffi::Buffer<ffi::F32> factors,
                           ffi::Buffer<ffi::F32> grads, ffi::Buffer<ffi::F32> scale,
                           ffi::ResultBuffer<ffi::F32> result) {
  const auto table_dims = table.dimensions();
  const auto row_dims = rows.dimensions();
  const auto grad_dims = grads.dimensions();
  if (table_dims.size() != 2 || row_dims.size() != 3) {
    return ffi::Error::InvalidArgument("expected table [N, D] and rows [B, T, C]");
  }
  const int64_t num_rows = table_dims[0], dim = table_dims[1];
  const int64_t bags = row_dims[0] * row_dims[1], capacity = row_dims[2];
  const bool pooled = grad_dims.size() == 3;
  if (factors.element_count() != rows.element_count() ||
      (pooled && (grad_dims[0] * grad_dims[1] != bags || grad_dims[2] != dim)) ||
      (!pooled && (grad_dims.size() != 4 || grad_dims[0] * grad_dims[1] != bags ||
                   grad_dims[2] != capacity || grad_dims[3] != dim))) {
    return ffi::Error::InvalidArgument(
        "expected factors [B, T, C] and grads [B, T, D] or [B, T, C, D]");
  }
  if (scale.element_count() != 1) return ffi::Error::InvalidArgument("expected a scalar scale");
  if (result->element_count() != table.element_count()) {
    return ffi::Error::InvalidArgument("expected the result shaped like the table");
  }
  float* out = result->typed_data();
  if (out != table.typed_data()) {  // not aliased (the caller did not donate): copy first
    std::memcpy(out, table.typed_data(), table.element_count() * sizeof(float));
  }
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
  const int64_t threads = std::max<int64_t>(1, thread_pool.num_threads());
  work->parts = std::max<int64_t>(1, std::min(threads, num_rows / kMinRowsPerPart));

  for (int64_t i = 0; i < work->parts - 1; ++i) {
    thread_pool.Schedule([work] { work->Run(); });
  }
  work->Run();
  while (work->finished_parts.load(std::memory_order_acquire) < work->parts) {
    __builtin_ia32_pause();
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RecjaxSparseRowUpdate, SparseRowUpdate,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
