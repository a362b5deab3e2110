// SparseLengthsSum over a stacked embedding table, as an XLA FFI handler for the CPU backend.
//
//   table    [N, D] float32: all tables of a model, stacked
//   flat_ids [B, T, L] int32: rows of `table` (table offsets already added)
//   pooled   [B, T, D] float32: pooled[b, t] = sum_l table[flat_ids[b, t, l]]
//
// The B*T bags are taken in table-major order (every bag of table 0, then of table 1, ...) and
// split into chunks that the caller thread and the tasks it schedules on XLA's own intra-op
// thread pool take from one atomic counter (no thread is started per call). Each thread
// prefetches the row kPrefetchDistance lookups ahead within a bag, so that several cache misses
// are in flight at once. Measured in one process, variants called in shuffled order on tables in
// huge pages: table-major order beat sample-major order by 10-15 % on the rmc2 tables at batch
// 256-1024 and tied on rmc1's; prefetch distances 16 and 32 tied; a T0 prefetch beat the
// non-temporal hint when the rows come from the last-level cache (small batches).
//
// Ids are clamped to [0, N), as XLA's gather does: out-of-range ids are detected (and rejected)
// in JAX, and never read outside the buffer.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kPrefetchDistance = 16;    // lookups ahead
constexpr int64_t kCacheLineBytes = 64;
constexpr int64_t kMinLookupsPerChunk = 512;  // below this, scheduling costs more than it saves
constexpr int64_t kChunksPerThread = 4;      // slack for threads that start late

inline const float* RowOf(const float* table, int64_t num_rows, int64_t dim, int32_t id) {
  const int64_t row = std::clamp<int64_t>(id, 0, num_rows - 1);
  return table + row * dim;
}

inline void PrefetchRow(const float* row, int64_t row_bytes) {
  const char* bytes = reinterpret_cast<const char*>(row);
  for (int64_t offset = 0; offset < row_bytes; offset += kCacheLineBytes) {
    __builtin_prefetch(bytes + offset, /*rw=*/0, /*locality=*/3);
  }
}

// Sums the rows of bags [first_bag, last_bag). kDim > 0 fixes the dim at compile time (the
// accumulator then lives in vector registers); kDim == 0 reads it from `dim`.
template <int64_t kDim>
void PoolBags(const float* table, int64_t num_rows, int64_t dim, const int32_t* flat_ids,
              int64_t pooling, float* pooled, int64_t first_bag, int64_t last_bag) {
  const int64_t width = kDim > 0 ? kDim : dim;
  const int64_t row_bytes = width * static_cast<int64_t>(sizeof(float));
  const int32_t* ids = flat_ids + first_bag * pooling;
  const int64_t lookups = (last_bag - first_bag) * pooling;
  for (int64_t i = 0; i < std::min(kPrefetchDistance, lookups); ++i) {
    PrefetchRow(RowOf(table, num_rows, width, ids[i]), row_bytes);
  }
  float accumulator[kDim > 0 ? kDim : 1];
  for (int64_t bag = 0; bag < last_bag - first_bag; ++bag) {
    float* out = pooled + (first_bag + bag) * width;
    float* sum = kDim > 0 ? accumulator : out;
    std::fill(sum, sum + width, 0.0f);
    for (int64_t lookup = 0; lookup < pooling; ++lookup) {
      const int64_t i = bag * pooling + lookup;
      if (i + kPrefetchDistance < lookups) {
        PrefetchRow(RowOf(table, num_rows, width, ids[i + kPrefetchDistance]), row_bytes);
      }
      const float* row = RowOf(table, num_rows, width, ids[i]);
      for (int64_t d = 0; d < width; ++d) sum[d] += row[d];
    }
    if (kDim > 0) std::copy(sum, sum + width, out);
  }
}

void PoolBagsAnyDim(const float* table, int64_t num_rows, int64_t dim, const int32_t* flat_ids,
                    int64_t pooling, float* pooled, int64_t first_bag, int64_t last_bag) {
  switch (dim) {
    case 16:
      return PoolBags<16>(table, num_rows, dim, flat_ids, pooling, pooled, first_bag, last_bag);
    case 32:
      return PoolBags<32>(table, num_rows, dim, flat_ids, pooling, pooled, first_bag, last_bag);
    case 64:
      return PoolBags<64>(table, num_rows, dim, flat_ids, pooling, pooled, first_bag, last_bag);
    case 128:
      return PoolBags<128>(table, num_rows, dim, flat_ids, pooling, pooled, first_bag, last_bag);
    default:
      return PoolBags<0>(table, num_rows, dim, flat_ids, pooling, pooled, first_bag, last_bag);
  }
}

// Chunks of bags shared by the caller and the pool's tasks. Held by shared_ptr: a task that
// starts after all chunks are done still reads the counters safely, finds no work and returns.
struct SharedWork {
  const float* table;
  int64_t num_rows, dim, pooling, batch, tables, bags, bags_per_chunk, chunks;
  const int32_t* flat_ids;
  float* pooled;
  std::atomic<int64_t> next_chunk{0};
  std::atomic<int64_t> finished_chunks{0};

  void Run() {
    for (int64_t chunk = next_chunk.fetch_add(1); chunk < chunks;
         chunk = next_chunk.fetch_add(1)) {
      const int64_t first = chunk * bags_per_chunk;
      const int64_t last = std::min(bags, first + bags_per_chunk);
      for (int64_t item = first; item < last; ++item) {
        const int64_t bag = (item % batch) * tables + item / batch;  // table-major order
        PoolBagsAnyDim(table, num_rows, dim, flat_ids, pooling, pooled, bag, bag + 1);
      }
      finished_chunks.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error SparseLengthsSum(ffi::ThreadPool thread_pool, ffi::Buffer<ffi::F32> table,
                            ffi::Buffer<ffi::S32> flat_ids, ffi::ResultBuffer<ffi::F32> pooled) {
  const auto table_dims = table.dimensions();
  const auto id_dims = flat_ids.dimensions();
  if (table_dims.size() != 2 || id_dims.size() != 3) {
    return ffi::Error::InvalidArgument("expected table [N, D] and flat_ids [B, T, L]");
  }
  const int64_t num_rows = table_dims[0], dim = table_dims[1];
  const int64_t bags = id_dims[0] * id_dims[1], pooling = id_dims[2];
  const auto out_dims = pooled->dimensions();
  if (out_dims.size() != 3 || out_dims[0] * out_dims[1] != bags || out_dims[2] != dim) {
    return ffi::Error::InvalidArgument("expected pooled [B, T, D]");
  }
  if (num_rows == 0) return ffi::Error::InvalidArgument("the table has no rows");
  if (bags == 0) return ffi::Error::Success();

  auto work = std::make_shared<SharedWork>();
  work->table = table.typed_data();
  work->num_rows = num_rows;
  work->dim = dim;
  work->pooling = pooling;
  work->batch = id_dims[0];
  work->tables = id_dims[1];
  work->bags = bags;
  work->flat_ids = flat_ids.typed_data();
  work->pooled = pooled->typed_data();

  const int64_t threads = std::max<int64_t>(1, thread_pool.num_threads());
  const int64_t min_bags = std::max<int64_t>(1, kMinLookupsPerChunk / std::max<int64_t>(1, pooling));
  const int64_t wanted_chunks = std::max<int64_t>(1, std::min(threads * kChunksPerThread,
                                                              bags / min_bags));
  work->bags_per_chunk = (bags + wanted_chunks - 1) / wanted_chunks;
  work->chunks = (bags + work->bags_per_chunk - 1) / work->bags_per_chunk;

  const int64_t helpers = std::min(threads, work->chunks) - 1;
  for (int64_t i = 0; i < helpers; ++i) {
    thread_pool.Schedule([work] { work->Run(); });
  }
  work->Run();
  // Every chunk has been taken; wait for the ones other threads are still summing.
  while (work->finished_chunks.load(std::memory_order_acquire) < work->chunks) {
    __builtin_ia32_pause();
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RecjaxSparseLengthsSum, SparseLengthsSum,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
