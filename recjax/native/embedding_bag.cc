// SparseLengthsSum over stacked embedding tables, as an XLA FFI handler for the CPU backend.
//
//   table        [N, W] stored rows of tables of one dim and dtype, stacked: float32, float16 or
//                bfloat16 [N, D], or uint8 [N, W] row-wise quantized rows (int8: D codes; int4:
//                ceil(D / 2) bytes of two codes, low nibble first; then a float32 scale and bias)
//   ids          [B, T, C] int32: ids within each bag's table, padded to the capacity C
//   lengths      [B, T] int32 valid ids per bag, or an empty array when every bag is full
//   weights      [B, T, C] float32 per-id weights, or an empty array when unweighted
//   row_offsets  T int64 (attribute): the first row of bag t's table in `table`
//   mean         bool (attribute): divide each bag's sum by its length
//   dtype        string (attribute): "float32", "float16", "bfloat16", "int8" or "int4"
//   dim          int64 (attribute): D, the values per row (a row may be padded past its data)
//   pooled       [B, T, D] float32: pooled[b, t] = sum_{l < length} w[b, t, l] row(offset_t + ids[b, t, l])
//
// A row is read as float32 in the inner loop (a quantized value is code * scale + bias) and summed
// in float32; recjax/layers/quantization.py defines the formats.
//
// The B*T bags are taken in table-major order (every bag of table 0, then of table 1, ...) and
// split into chunks that the caller thread and the tasks it schedules on XLA's own intra-op
// thread pool take from one atomic counter (no thread is started per call). Each thread
// prefetches the row kPrefetchDistance lookups ahead within a bag, so that several cache misses
// are in flight at once. Measured in one process, variants called in shuffled order on tables in
// huge pages: table-major order beat sample-major order by 10-15 % on the rmc2 tables at batch
// 256-1024 and tied on rmc1's; prefetch distances 16 and 32 tied; a T0 prefetch beat the
// non-temporal hint when the rows come from the last-level cache (small batches). (Measured on
// float32 rows; the other formats share the loop.)
//
// Rows are clamped to [0, N), as XLA's gather does: out-of-range ids are detected (and rejected)
// in JAX, and never read outside the buffer. Lengths are clamped to [0, C] likewise.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kPrefetchDistance = 16;    // lookups ahead
constexpr int64_t kCacheLineBytes = 64;
constexpr int64_t kMinLookupsPerChunk = 512;  // below this, scheduling costs more than it saves
constexpr int64_t kChunksPerThread = 4;      // slack for threads that start late
constexpr int64_t kScaleBiasBytes = 8;       // a quantized row's float32 scale and bias

// How a row is stored (recjax/layers/quantization.py).
enum class Format { kFloat32, kFloat16, kBFloat16, kInt8, kInt4 };

inline const uint8_t* RowOf(const uint8_t* table, int64_t num_rows, int64_t row_bytes,
                            int64_t row) {
  return table + std::clamp<int64_t>(row, 0, num_rows - 1) * row_bytes;
}

// Prefetches every cache line the row touches: a row that does not start on a line (a 72-byte
// int8 row, say) may touch one line more than its size suggests.
inline void PrefetchRow(const uint8_t* row, int64_t row_bytes) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(row) & ~uintptr_t{kCacheLineBytes - 1};
  const uintptr_t last = reinterpret_cast<uintptr_t>(row + row_bytes - 1);
  for (uintptr_t line = first; line <= last; line += kCacheLineBytes) {
    __builtin_prefetch(reinterpret_cast<const void*>(line), /*rw=*/0, /*locality=*/3);
  }
}

inline float LoadFloat(const uint8_t* bytes) {
  float value;
  std::memcpy(&value, bytes, sizeof(value));
  return value;
}

inline float HalfToFloat(uint16_t half) {
#if defined(__FLT16_MAX__)
  _Float16 value;
  std::memcpy(&value, &half, sizeof(value));
  return static_cast<float>(value);
#else
  // IEEE binary16 -> binary32 by hand: sign, exponent (rebiased; subnormals normalized), fraction.
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  uint32_t exponent = (half >> 10) & 0x1Fu;
  uint32_t fraction = half & 0x3FFu;
  uint32_t bits;
  if (exponent == 0x1Fu) {
    bits = sign | 0x7F800000u | (fraction << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (fraction << 13);
  } else if (fraction == 0) {
    bits = sign;
  } else {
    exponent = 113;
    while ((fraction & 0x400u) == 0) {
      fraction <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((fraction & 0x3FFu) << 13);
  }
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
#endif
}

inline float BFloat16ToFloat(uint16_t bfloat) {
  const uint32_t bits = static_cast<uint32_t>(bfloat) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// sum[0, width) += weight * values[0, width) for float16 values; 16 (AVX-512) or 8 (F16C) at a
// time where the machine converts halves in vector registers, one at a time elsewhere.
template <bool kWeighted>
inline void AddHalves(const uint16_t* values, int64_t width, float weight, float* sum) {
  int64_t d = 0;
#if defined(__AVX512F__)
  const __m512 weights16 = _mm512_set1_ps(weight);
  for (; d + 16 <= width; d += 16) {
    const __m512 row = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + d)));
    const __m512 total = _mm512_loadu_ps(sum + d);
    _mm512_storeu_ps(sum + d, kWeighted ? _mm512_fmadd_ps(weights16, row, total)
                                        : _mm512_add_ps(total, row));
  }
#endif
#if defined(__F16C__) && defined(__AVX__)
  const __m256 weights8 = _mm256_set1_ps(weight);
  for (; d + 8 <= width; d += 8) {
    const __m256 row = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values + d)));
    const __m256 total = _mm256_loadu_ps(sum + d);
    _mm256_storeu_ps(sum + d, kWeighted ? _mm256_add_ps(total, _mm256_mul_ps(weights8, row))
                                        : _mm256_add_ps(total, row));
  }
#endif
  for (; d < width; ++d) sum[d] += kWeighted ? weight * HalfToFloat(values[d]) : HalfToFloat(values[d]);
}

// sum[0, width) += weight * row, the row read as float32 from its stored format. kWeighted false:
// weight is 1 and not multiplied (float32 rows then sum exactly as before formats existed).
template <Format kFormat, bool kWeighted>
inline void AddRow(const uint8_t* row, int64_t width, float weight, float* sum) {
  if constexpr (kFormat == Format::kFloat32) {
    const float* values = reinterpret_cast<const float*>(row);
    for (int64_t d = 0; d < width; ++d) sum[d] += kWeighted ? weight * values[d] : values[d];
  } else if constexpr (kFormat == Format::kFloat16) {
    AddHalves<kWeighted>(reinterpret_cast<const uint16_t*>(row), width, weight, sum);
  } else if constexpr (kFormat == Format::kBFloat16) {
    const uint16_t* values = reinterpret_cast<const uint16_t*>(row);
    for (int64_t d = 0; d < width; ++d) {
      const float value = BFloat16ToFloat(values[d]);
      sum[d] += kWeighted ? weight * value : value;
    }
  } else if constexpr (kFormat == Format::kInt8) {
    // value = code * scale + bias, with the scale and bias after the D codes.
    const float scale = LoadFloat(row + width) * (kWeighted ? weight : 1.0f);
    const float bias = LoadFloat(row + width + 4) * (kWeighted ? weight : 1.0f);
    for (int64_t d = 0; d < width; ++d) sum[d] += scale * static_cast<float>(row[d]) + bias;
  } else {
    // int4: the codes of byte j are d = 2j (low nibble) and 2j + 1 (high nibble); unpacked a
    // block at a time into bytes, then summed as int8 codes are.
    const int64_t code_bytes = (width + 1) / 2;
    const float scale = LoadFloat(row + code_bytes) * (kWeighted ? weight : 1.0f);
    const float bias = LoadFloat(row + code_bytes + 4) * (kWeighted ? weight : 1.0f);
    constexpr int64_t kBlock = 64;  // codes per block
    uint8_t codes[kBlock];
    for (int64_t first = 0; first < width; first += kBlock) {
      const int64_t count = std::min(kBlock, width - first);
      const uint8_t* packed = row + first / 2;
      for (int64_t j = 0; j < (count + 1) / 2; ++j) {
        codes[2 * j] = packed[j] & 0xF;
        codes[2 * j + 1] = packed[j] >> 4;
      }
      for (int64_t d = 0; d < count; ++d) {
        sum[first + d] += scale * static_cast<float>(codes[d]) + bias;
      }
    }
  }
}

// One bag: its ids, how many are valid, their weights (or null) and its table's first row.
struct Bag {
  const int32_t* ids;
  int64_t length;
  const float* weights;
  int64_t row_offset;
};

// The stacked buffer: raw rows of `row_bytes` bytes (the stride), each holding `dim` values in its
// first `data_bytes` bytes (the rest is padding, never read or prefetched).
struct Table {
  const uint8_t* rows;
  int64_t num_rows;
  int64_t row_bytes;
  int64_t data_bytes;
  int64_t dim;
};

// Pools one bag into `out`. kDim > 0 fixes the dim at compile time (the accumulator then lives in
// vector registers); kDim == 0 reads it from `table.dim`.
template <Format kFormat, int64_t kDim>
void PoolBag(const Table& table, const Bag& bag, bool mean, float* out) {
  const int64_t width = kDim > 0 ? kDim : table.dim;
  for (int64_t i = 0; i < std::min(kPrefetchDistance, bag.length); ++i) {
    PrefetchRow(RowOf(table.rows, table.num_rows, table.row_bytes, bag.row_offset + bag.ids[i]),
                table.data_bytes);
  }
  float accumulator[kDim > 0 ? kDim : 1];
  float* sum = kDim > 0 ? accumulator : out;
  std::fill(sum, sum + width, 0.0f);
  for (int64_t i = 0; i < bag.length; ++i) {
    if (i + kPrefetchDistance < bag.length) {
      PrefetchRow(RowOf(table.rows, table.num_rows, table.row_bytes,
                        bag.row_offset + bag.ids[i + kPrefetchDistance]),
                  table.data_bytes);
    }
    const uint8_t* row =
        RowOf(table.rows, table.num_rows, table.row_bytes, bag.row_offset + bag.ids[i]);
    if (bag.weights == nullptr) {
      AddRow<kFormat, false>(row, width, 1.0f, sum);
    } else {
      AddRow<kFormat, true>(row, width, bag.weights[i], sum);
    }
  }
  if (mean && bag.length > 0) {
    const float scale = 1.0f / static_cast<float>(bag.length);
    for (int64_t d = 0; d < width; ++d) sum[d] *= scale;
  }
  if (kDim > 0) std::copy(sum, sum + width, out);
}

template <Format kFormat>
void PoolBagAnyDim(const Table& table, const Bag& bag, bool mean, float* out) {
  switch (table.dim) {
    case 16:
      return PoolBag<kFormat, 16>(table, bag, mean, out);
    case 32:
      return PoolBag<kFormat, 32>(table, bag, mean, out);
    case 64:
      return PoolBag<kFormat, 64>(table, bag, mean, out);
    case 128:
      return PoolBag<kFormat, 128>(table, bag, mean, out);
    default:
      return PoolBag<kFormat, 0>(table, bag, mean, out);
  }
}

using PoolFunction = void (*)(const Table&, const Bag&, bool, float*);

PoolFunction PoolFunctionOf(Format format) {
  switch (format) {
    case Format::kFloat32:
      return PoolBagAnyDim<Format::kFloat32>;
    case Format::kFloat16:
      return PoolBagAnyDim<Format::kFloat16>;
    case Format::kBFloat16:
      return PoolBagAnyDim<Format::kBFloat16>;
    case Format::kInt8:
      return PoolBagAnyDim<Format::kInt8>;
    case Format::kInt4:
      return PoolBagAnyDim<Format::kInt4>;
  }
  return nullptr;
}

// Chunks of bags shared by the caller and the pool's tasks. Held by shared_ptr: a task that
// starts after all chunks are done still reads the counters safely, finds no work and returns.
struct SharedWork {
  Table table;
  PoolFunction pool;
  int64_t capacity, batch, tables, bags, bags_per_chunk, chunks;
  const int32_t* ids;
  const int32_t* lengths;  // null: every bag holds `capacity` ids
  const float* weights;    // null: unweighted
  const int64_t* row_offsets;
  bool mean;
  float* pooled;
  std::atomic<int64_t> next_chunk{0};
  std::atomic<int64_t> finished_chunks{0};

  void PoolOne(int64_t bag_index) const {
    const int64_t length =
        lengths == nullptr ? capacity : std::clamp<int64_t>(lengths[bag_index], 0, capacity);
    const Bag bag{ids + bag_index * capacity, length,
                  weights == nullptr ? nullptr : weights + bag_index * capacity,
                  row_offsets[bag_index % tables]};
    pool(table, bag, mean, pooled + bag_index * table.dim);
  }

  void Run() {
    for (int64_t chunk = next_chunk.fetch_add(1); chunk < chunks;
         chunk = next_chunk.fetch_add(1)) {
      const int64_t first = chunk * bags_per_chunk;
      const int64_t last = std::min(bags, first + bags_per_chunk);
      for (int64_t item = first; item < last; ++item) {
        PoolOne((item % batch) * tables + item / batch);  // table-major order
      }
      finished_chunks.fetch_add(1, std::memory_order_release);
    }
  }
};

// The format named by `dtype`, checked against the buffer's element type and row width (rows may
// be padded past their data: `width` elements of which the first `needed` hold the row).
ffi::Error FormatOf(std::string_view dtype, ffi::DataType element_type, int64_t width,
                    int64_t dim, Format* format, int64_t* data_elements) {
  struct Known {
    std::string_view name;
    Format format;
    ffi::DataType element_type;
    int64_t needed;
  };
  const Known known[] = {
      {"float32", Format::kFloat32, ffi::DataType::F32, dim},
      {"float16", Format::kFloat16, ffi::DataType::F16, dim},
      {"bfloat16", Format::kBFloat16, ffi::DataType::BF16, dim},
      {"int8", Format::kInt8, ffi::DataType::U8, dim + kScaleBiasBytes},
      {"int4", Format::kInt4, ffi::DataType::U8, (dim + 1) / 2 + kScaleBiasBytes},
  };
  for (const Known& entry : known) {
    if (entry.name != dtype) continue;
    if (entry.element_type != element_type || width < entry.needed) {
      return ffi::Error::InvalidArgument(
          "the table's element type or row width does not match its dtype and dim");
    }
    *format = entry.format;
    *data_elements = entry.needed;
    return ffi::Error::Success();
  }
  return ffi::Error::InvalidArgument(
      "unknown dtype; expected float32, float16, bfloat16, int8 or int4");
}

ffi::Error SparseLengthsSum(ffi::ThreadPool thread_pool, ffi::AnyBuffer table,
                            ffi::Buffer<ffi::S32> ids, ffi::Buffer<ffi::S32> lengths,
                            ffi::Buffer<ffi::F32> weights, ffi::Span<const int64_t> row_offsets,
                            bool mean, std::string_view dtype, int64_t dim,
                            ffi::ResultBuffer<ffi::F32> pooled) {
  const auto table_dims = table.dimensions();
  const auto id_dims = ids.dimensions();
  if (table_dims.size() != 2 || id_dims.size() != 3) {
    return ffi::Error::InvalidArgument("expected table [N, W] and ids [B, T, C]");
  }
  if (dim <= 0) return ffi::Error::InvalidArgument("expected a positive dim");
  Format format;
  int64_t data_elements;
  if (ffi::Error error =
          FormatOf(dtype, table.element_type(), table_dims[1], dim, &format, &data_elements);
      error.failure()) {
    return error;
  }
  const int64_t num_rows = table_dims[0];
  const int64_t bags = id_dims[0] * id_dims[1], capacity = id_dims[2];
  const auto out_dims = pooled->dimensions();
  if (out_dims.size() != 3 || out_dims[0] * out_dims[1] != bags || out_dims[2] != dim) {
    return ffi::Error::InvalidArgument("expected pooled [B, T, D]");
  }
  if (static_cast<int64_t>(row_offsets.size()) != id_dims[1]) {
    return ffi::Error::InvalidArgument("expected one row offset per bag of a sample");
  }
  const bool has_lengths = lengths.element_count() > 0;
  const bool has_weights = weights.element_count() > 0;
  if ((has_lengths && static_cast<int64_t>(lengths.element_count()) != bags) ||
      (has_weights && static_cast<int64_t>(weights.element_count()) != bags * capacity)) {
    return ffi::Error::InvalidArgument("expected lengths [B, T] and weights [B, T, C], or empty");
  }
  if (num_rows == 0) return ffi::Error::InvalidArgument("the table has no rows");
  if (bags == 0) return ffi::Error::Success();

  auto work = std::make_shared<SharedWork>();
  const int64_t element_bytes = static_cast<int64_t>(ffi::ByteWidth(table.element_type()));
  work->table = Table{static_cast<const uint8_t*>(table.untyped_data()), num_rows,
                      element_bytes * table_dims[1], element_bytes * data_elements, dim};
  work->pool = PoolFunctionOf(format);
  work->capacity = capacity;
  work->batch = id_dims[0];
  work->tables = id_dims[1];
  work->bags = bags;
  work->ids = ids.typed_data();
  work->lengths = has_lengths ? lengths.typed_data() : nullptr;
  work->weights = has_weights ? weights.typed_data() : nullptr;
  work->row_offsets = row_offsets.begin();
  work->mean = mean;
  work->pooled = pooled->typed_data();

  const int64_t threads = std::max<int64_t>(1, thread_pool.num_threads());
  const int64_t min_bags = std::max<int64_t>(1, kMinLookupsPerChunk / std::max<int64_t>(1, capacity));
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
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<ffi::Span<const int64_t>>("row_offsets")
                                  .Attr<bool>("mean")
                                  .Attr<std::string_view>("dtype")
                                  .Attr<int64_t>("dim")
                                  .Ret<ffi::Buffer<ffi::F32>>());
