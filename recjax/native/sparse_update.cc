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
//   slot_tables  T int64 (attribute): the table each bag slot reads (slots of one table share it)
//
// and `scale` = the learning rate. With g_r the sum of row r's lookup gradients in the call:
//   a_r += mean_d(g_r[d]^2);  table[r] -= lr * g_r / (sqrt(a_r) + epsilon)
// Each thread takes one table at a time and steps each of its rows that the table's slots looked
// up once: a row looked up once straight from its lookup, a repeated row from the sum of its
// gradients in (b, t, c) order (a scratch of the table's repeated rows; an int per row of the
// thread's range marks what was seen). No sort.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
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

// The lookups both steps read (rows, factors and gradients as the header describes) and the
// table they update, split into row ranges.
struct LookupWork : RowRangeWork {
  float* table = nullptr;
  int64_t dim = 0, batch = 0, num_slots = 0, capacity = 0;
  const int32_t* rows = nullptr;
  const float* factors = nullptr;
  const float* grads = nullptr;
  bool pooled = false;

  int64_t Lookups() const { return batch * num_slots * capacity; }

  const float* GradOf(int64_t lookup) const {
    return grads + (pooled ? lookup / capacity : lookup) * dim;
  }

  int64_t RowOf(int64_t lookup) const {
    return std::clamp<int64_t>(rows[lookup], 0, num_rows - 1);
  }

  // Asks for a table row ahead of its update.
  void PrefetchRow(int64_t row) const {
    const char* bytes = reinterpret_cast<const char*>(table + row * dim);
    for (int64_t offset = 0; offset < dim * 4; offset += kCacheLineBytes) {
      __builtin_prefetch(bytes + offset, /*rw=*/1, /*locality=*/3);
    }
  }
};

// Checks the shapes both steps share and points `work` at them, with `out` (the table's result
// buffer) as the table to update. An empty message: all is well.
const char* SetLookups(LookupWork& work, float* out, ffi::Buffer<ffi::F32>& table,
                       ffi::Buffer<ffi::S32>& rows, ffi::Buffer<ffi::F32>& factors,
                       ffi::Buffer<ffi::F32>& grads) {
  const auto table_dims = table.dimensions();
  const auto row_dims = rows.dimensions();
  const auto grad_dims = grads.dimensions();
  if (table_dims.size() != 2 || row_dims.size() != 3) {
    return "expected table [N, D] and rows [B, T, C]";
  }
  const int64_t dim = table_dims[1], bags = row_dims[0] * row_dims[1], capacity = row_dims[2];
  const bool pooled = grad_dims.size() == 3;
  if (factors.element_count() != rows.element_count() ||
      (pooled && (grad_dims[0] * grad_dims[1] != bags || grad_dims[2] != dim)) ||
      (!pooled && (grad_dims.size() != 4 || grad_dims[0] * grad_dims[1] != bags ||
                   grad_dims[2] != capacity || grad_dims[3] != dim))) {
    return "expected factors [B, T, C] and grads [B, T, D] or [B, T, C, D]";
  }
  work.table = out;
  work.num_rows = table_dims[0];
  work.dim = dim;
  work.batch = row_dims[0];
  work.num_slots = row_dims[1];
  work.capacity = capacity;
  work.rows = rows.typed_data();
  work.factors = factors.typed_data();
  work.grads = grads.typed_data();
  work.pooled = pooled;
  return "";
}

// Copies `from` into `to` unless they are one buffer (the caller donated it).
void CopyUnlessAliased(float* to, const float* from, int64_t count) {
  if (to != from) std::memcpy(to, from, count * sizeof(float));
}

struct UpdateWork : LookupWork {
  float scale = 0.0f;

  void UpdatePart(int64_t part) const override {
    const int64_t first = num_rows * part / parts;
    const int64_t last = num_rows * (part + 1) / parts;
    const int64_t lookups = Lookups();
    for (int64_t i = 0; i < lookups; ++i) {
      if (i + kPrefetchDistance < lookups) {
        const int64_t ahead = RowOf(i + kPrefetchDistance);
        if (ahead >= first && ahead < last) PrefetchRow(ahead);
      }
      const int64_t row = RowOf(i);
      if (row < first || row >= last) continue;
      const float step = scale * factors[i];
      if (step == 0.0f) continue;
      float* target = table + row * dim;
      const float* grad = GradOf(i);
      for (int64_t d = 0; d < dim; ++d) target[d] += step * grad[d];
    }
  }
};

ffi::Error SparseRowUpdate(ffi::ThreadPool thread_pool, ffi::Buffer<ffi::F32> table,
                           ffi::Buffer<ffi::S32> rows, ffi::Buffer<ffi::F32> factors,
                           ffi::Buffer<ffi::F32> grads, ffi::Buffer<ffi::F32> scale,
                           ffi::ResultBuffer<ffi::F32> result) {
  auto work = std::make_shared<UpdateWork>();
  const char* problem = SetLookups(*work, result->typed_data(), table, rows, factors, grads);
  if (*problem) return ffi::Error::InvalidArgument(problem);
  if (scale.element_count() != 1) return ffi::Error::InvalidArgument("expected a scalar scale");
  if (result->element_count() != table.element_count()) {
    return ffi::Error::InvalidArgument("expected the result shaped like the table");
  }
  CopyUnlessAliased(work->table, table.typed_data(), table.element_count());
  if (work->num_rows == 0 || work->Lookups() == 0) return ffi::Error::Success();
  work->scale = scale.typed_data()[0];
  RunOnThreads(thread_pool, work);
  return ffi::Error::Success();
}

struct AdagradWork : LookupWork {
  float* accumulator = nullptr;
  std::vector<std::vector<int64_t>> slots_of_table;  // the slots reading each table
  float learning_rate = 0.0f, epsilon = 0.0f;

  // Asks for a row's table values and accumulator ahead of their use.
  void Prefetch(int64_t row) const {
    PrefetchRow(row);
    __builtin_prefetch(accumulator + row, /*rw=*/1, /*locality=*/3);
  }

  // Calls visit(i, row) for each lookup i of `slots` whose row is in [first, last) and whose
  // factor is not 0, in (b, t, c) order.
  template <typename Visit>
  void ForEachLookup(const std::vector<int64_t>& slots, int64_t first, int64_t last,
                     Visit visit) const {
    for (int64_t b = 0; b < batch; ++b) {
      for (const int64_t t : slots) {
        for (int64_t c = 0; c < capacity; ++c) {
          const int64_t i = (b * num_slots + t) * capacity + c;
          const int64_t row = RowOf(i);
          if (row >= first && row < last && factors[i] != 0.0f) visit(i, row);
        }
      }
    }
  }

  // a_r += mean_d(g[d]^2); table[r] -= lr * g / (sqrt(a_r) + epsilon), g = factor * gradient.
  void Step(int64_t row, float factor, const float* gradient) const {
    float squares = 0.0f;
    for (int64_t d = 0; d < dim; ++d) squares += gradient[d] * gradient[d];
    const float total = accumulator[row] + factor * factor * squares / static_cast<float>(dim);
    accumulator[row] = total;
    const float root = std::sqrt(total) + epsilon;
    if (root == 0.0f) return;  // epsilon 0 and all of the row's gradients 0: no step
    const float step = -learning_rate * factor / root;
    float* target = table + row * dim;
    for (int64_t d = 0; d < dim; ++d) target[d] += step * gradient[d];
  }

  // Per table: a first pass marks each row seen once (by its lookup) or more; a second steps the
  // rows seen once straight from their lookup and sums the others' gradients in a scratch, which
  // then steps them. The scratch holds only repeated rows, of one table.
  void UpdatePart(int64_t part) const override {
    constexpr int32_t kUnseen = -1, kSeenOnce = -2, kRepeated = -3;
    const int64_t first = num_rows * part / parts;
    const int64_t last = num_rows * (part + 1) / parts;
    // row - first -> kUnseen, kSeenOnce, kRepeated; in the second pass a repeated row's place in
    // `sums` instead
    std::vector<int32_t> mark(last - first, kUnseen);
    std::vector<int64_t> seen_rows, repeated_rows, mine;  // mine: this range's lookups, in order
    std::vector<float> sums;                              // [repeated rows, D]
    for (const std::vector<int64_t>& slots : slots_of_table) {
      ForEachLookup(slots, first, last, [&](int64_t i, int64_t row) {
        mine.push_back(i);
        int32_t& seen = mark[row - first];
        if (seen == kUnseen) {
          seen = kSeenOnce;
          seen_rows.push_back(row);
        } else if (seen == kSeenOnce) {
          seen = kRepeated;
          repeated_rows.push_back(row);
        }
      });
      sums.assign(repeated_rows.size() * dim, 0.0f);
      for (size_t place = 0; place < repeated_rows.size(); ++place) {
        mark[repeated_rows[place] - first] = static_cast<int32_t>(place);
      }
      for (size_t k = 0; k < mine.size(); ++k) {
        if (k + kPrefetchDistance < mine.size()) Prefetch(RowOf(mine[k + kPrefetchDistance]));
        const int64_t i = mine[k], row = RowOf(i);
        const int32_t place = mark[row - first];
        if (place == kSeenOnce) {
          Step(row, factors[i], GradOf(i));
          continue;
        }
        float* sum = sums.data() + static_cast<int64_t>(place) * dim;
        const float factor = factors[i];
        const float* grad = GradOf(i);
        for (int64_t d = 0; d < dim; ++d) sum[d] += factor * grad[d];
      }
      for (size_t place = 0; place < repeated_rows.size(); ++place) {
        Step(repeated_rows[place], 1.0f, sums.data() + place * dim);
      }
      for (const int64_t row : seen_rows) mark[row - first] = kUnseen;
      seen_rows.clear();
      repeated_rows.clear();
      mine.clear();
    }
  }
};

ffi::Error SparseRowwiseAdagrad(ffi::ThreadPool thread_pool, ffi::Buffer<ffi::F32> table,
                                ffi::Buffer<ffi::F32> accumulator, ffi::Buffer<ffi::S32> rows,
                                ffi::Buffer<ffi::F32> factors, ffi::Buffer<ffi::F32> grads,
                                ffi::Buffer<ffi::F32> learning_rate,
                                ffi::Buffer<ffi::F32> epsilon,
                                ffi::Span<const int64_t> slot_tables,
                                ffi::ResultBuffer<ffi::F32> table_out,
                                ffi::ResultBuffer<ffi::F32> accumulator_out) {
  auto work = std::make_shared<AdagradWork>();
  const char* problem = SetLookups(*work, table_out->typed_data(), table, rows, factors, grads);
  if (*problem) return ffi::Error::InvalidArgument(problem);
  const int64_t num_rows = work->num_rows;
  if (static_cast<int64_t>(accumulator.element_count()) != num_rows ||
      static_cast<int64_t>(accumulator_out->element_count()) != num_rows ||
      table_out->element_count() != table.element_count()) {
    return ffi::Error::InvalidArgument("expected an accumulator [N] and results like the inputs");
  }
  if (learning_rate.element_count() != 1 || epsilon.element_count() != 1) {
    return ffi::Error::InvalidArgument("expected a scalar learning rate and epsilon");
  }
  if (static_cast<int64_t>(slot_tables.size()) != work->num_slots) {
    return ffi::Error::InvalidArgument("expected one slot_tables entry per bag slot");
  }
  CopyUnlessAliased(work->table, table.typed_data(), table.element_count());
  CopyUnlessAliased(accumulator_out->typed_data(), accumulator.typed_data(), num_rows);
  if (num_rows == 0 || work->Lookups() == 0) return ffi::Error::Success();

  work->accumulator = accumulator_out->typed_data();
  for (int64_t t = 0; t < work->num_slots; ++t) {
    auto same = std::find_if(work->slots_of_table.begin(), work->slots_of_table.end(),
                             [&](const std::vector<int64_t>& slots) {
                               return slot_tables[slots.front()] == slot_tables[t];
                             });
    if (same == work->slots_of_table.end()) {
      work->slots_of_table.push_back({t});
    } else {
      same->push_back(t);
    }
  }
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
                                  .Attr<ffi::Span<const int64_t>>("slot_tables")
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
