// Machine probes for `benchmarks.machine`: plain loops that show what the memory system can do,
// with no framework in the way. Called through ctypes; each spawns its own threads, which is
// negligible against the hundreds of milliseconds one probe runs.
//
//   recjax_gather_rows: sums `count` rows of `dim` floats at random `row_ids` of a [rows, dim]
//     table, split over `threads` threads, each prefetching kPrefetchDistance rows ahead.
//   recjax_stream_read: sums `count` consecutive floats, split over `threads` threads.
//
// Both return the sum of what they read, so that the compiler cannot drop the reads.

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

constexpr int64_t kPrefetchDistance = 16;
constexpr int64_t kCacheLineBytes = 64;

// kDim > 0 fixes the row width at compile time, so that the sum stays in vector registers (the
// same advantage the embedding-bag kernel has); kDim == 0 reads it from `dim`.
template <int64_t kDim>
double GatherRange(const float* table, int64_t dim, const int32_t* row_ids, int64_t first,
                   int64_t last) {
  const int64_t width = kDim > 0 ? kDim : dim;
  const int64_t row_bytes = width * static_cast<int64_t>(sizeof(float));
  std::vector<float> dynamic_sum(kDim > 0 ? 0 : width, 0.0f);
  float fixed_sum[kDim > 0 ? kDim : 1] = {};
  float* sum = kDim > 0 ? fixed_sum : dynamic_sum.data();
  for (int64_t i = first; i < last; ++i) {
    if (i + kPrefetchDistance < last) {
      const char* ahead =
          reinterpret_cast<const char*>(table + row_ids[i + kPrefetchDistance] * width);
      for (int64_t offset = 0; offset < row_bytes; offset += kCacheLineBytes) {
        __builtin_prefetch(ahead + offset, 0, 3);
      }
    }
    const float* row = table + static_cast<int64_t>(row_ids[i]) * width;
    for (int64_t d = 0; d < width; ++d) sum[d] += row[d];
  }
  double total = 0;
  for (int64_t d = 0; d < width; ++d) total += sum[d];
  return total;
}

double GatherRangeAnyDim(const float* table, int64_t dim, const int32_t* row_ids, int64_t first,
                         int64_t last) {
  switch (dim) {
    case 16:
      return GatherRange<16>(table, dim, row_ids, first, last);
    case 32:
      return GatherRange<32>(table, dim, row_ids, first, last);
    case 64:
      return GatherRange<64>(table, dim, row_ids, first, last);
    case 128:
      return GatherRange<128>(table, dim, row_ids, first, last);
    default:
      return GatherRange<0>(table, dim, row_ids, first, last);
  }
}

double StreamRange(const float* data, int64_t first, int64_t last) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = first;
  for (; i + kLanes <= last; i += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) lanes[lane] += data[i + lane];
  }
  double total = 0;
  for (; i < last; ++i) total += data[i];
  for (float value : lanes) total += value;
  return total;
}

template <typename Work>
double InThreads(int threads, int64_t count, Work work) {
  threads = std::max(1, threads);
  std::vector<double> partial(threads, 0.0);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    const int64_t first = count * t / threads, last = count * (t + 1) / threads;
    workers.emplace_back([&, t, first, last] { partial[t] = work(first, last); });
  }
  for (auto& worker : workers) worker.join();
  double total = 0;
  for (double value : partial) total += value;
  return total;
}

}  // namespace

extern "C" double recjax_gather_rows(const float* table, int64_t dim, const int32_t* row_ids,
                                     int64_t count, int threads) {
  return InThreads(threads, count, [&](int64_t first, int64_t last) {
    return GatherRangeAnyDim(table, dim, row_ids, first, last);
  });
}

extern "C" double recjax_stream_read(const float* data, int64_t count, int threads) {
  return InThreads(threads, count,
                   [&](int64_t first, int64_t last) { return StreamRange(data, first, last); });
}
