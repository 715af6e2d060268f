// Hostile and malformed GGUF input: every corruption must end in ilre::Exception (bad_gguf) naming the problem
// — never a crash, an out-of-bounds read, a hang or a huge allocation — and every valid encoding must parse.
//
// Files are built in memory: GgufWriter for the common case, and a hand encoder (RawGguf) for what the writer
// cannot express (all 13 value types, nested arrays, broken counts, offsets and dimensions). Every parse runs
// on an exactly-sized heap copy so that, under ASan, a read one byte past the end is reported.
#include "model/gguf/gguf.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "ilre/error.h"
#include "model/gguf/ggml_type.h"
#include "model/gguf/gguf_writer.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

using Bytes = std::vector<uint8_t>;
using VT = GgufValueType;

constexpr uint32_t kMagic = 0x46554747;  // "GGUF"
constexpr const char* kOrigin = "malformed.gguf";

// ---------------------------------------------------------------------------------------------------------
// Hand encoder.

struct Enc {
  Bytes b;
  template <class T>
  Enc& put(T v) {
    // Byte by byte: GCC 12 with ASan reports a false -Wstringop-overflow for the resize + memcpy form.
    uint8_t raw_bytes[sizeof(T)];
    std::memcpy(raw_bytes, &v, sizeof(T));
    for (uint8_t x : raw_bytes) b.push_back(x);
    return *this;
  }
  Enc& str(std::string_view s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Enc& raw(const Bytes& x) {
    b.insert(b.end(), x.begin(), x.end());
    return *this;
  }
};

// One metadata pair: key, value type, encoded value.
Bytes kv(std::string_view key, uint32_t type, const Bytes& payload) {
  return Enc().str(key).put<uint32_t>(type).raw(payload).b;
}
Bytes kv(std::string_view key, VT type, const Bytes& payload) { return kv(key, static_cast<uint32_t>(type), payload); }

template <class T>
Bytes enc(T v) {
  return Enc().put<T>(v).b;
}
Bytes enc_str(std::string_view s) { return Enc().str(s).b; }

// Array payload: element type, count, then the elements as given (count is written verbatim so tests can lie).
Bytes arr(uint32_t elem, uint64_t count, const Bytes& elements) {
  return Enc().put<uint32_t>(elem).put<uint64_t>(count).raw(elements).b;
}
Bytes arr(VT elem, uint64_t count, const Bytes& elements) { return arr(static_cast<uint32_t>(elem), count, elements); }

template <class T>
Bytes arr_of(VT elem, const std::vector<T>& values) {
  Enc e;
  for (T v : values) e.put<T>(v);
  return arr(elem, values.size(), e.b);
}
Bytes arr_of_strings(const std::vector<std::string>& values) {
  Enc e;
  for (const std::string& s : values) e.str(s);
  return arr(VT::STRING, values.size(), e.b);
}

struct RawTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;
  std::optional<uint64_t> offset;   // default: packed after the previous auto-placed tensor, aligned
  std::optional<uint64_t> n_bytes;  // data to reserve for an auto-placed tensor; default from dims and type
};

// Byte size from the type table; 0 when unknown or absurd (those files must fail before the data matters).
uint64_t natural_bytes(const RawTensor& t) {
  const std::optional<GgmlTypeInfo> info = ggml_type_info(t.type);
  if (!info || t.dims.empty()) return 0;
  unsigned __int128 n = 1;
  for (uint64_t d : t.dims) {
    n *= d;
    if (n > (1u << 20)) return 0;
  }
  if (n % static_cast<uint64_t>(info->block_size) != 0) return 0;
  return static_cast<uint64_t>(n) / static_cast<uint64_t>(info->block_size) * static_cast<uint64_t>(info->block_bytes);
}

// Deterministic content of the data section, so tests can check a tensor points at the right bytes.
uint8_t data_pattern(size_t pos) { return static_cast<uint8_t>(pos * 131 + (pos >> 8) * 17 + 7); }

struct RawGguf {
  uint32_t magic = kMagic;
  uint32_t version = 3;
  std::optional<uint64_t> n_tensors;  // header overrides; default: the real counts
  std::optional<uint64_t> n_kv;
  std::vector<Bytes> kvs;
  std::vector<RawTensor> tensors;
  uint64_t alignment = 32;  // used for placement and padding; a general.alignment key must be added separately

  uint64_t pad(uint64_t x) const { return (x + alignment - 1) / alignment * alignment; }

  Bytes build() const {
    Enc e;
    e.put<uint32_t>(magic).put<uint32_t>(version);
    e.put<uint64_t>(n_tensors.value_or(tensors.size())).put<uint64_t>(n_kv.value_or(kvs.size()));
    for (const Bytes& k : kvs) e.raw(k);
    uint64_t cursor = 0;  // end of the auto-placed data
    for (const RawTensor& t : tensors) {
      e.str(t.name).put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) e.put<uint64_t>(d);
      e.put<uint32_t>(t.type);
      uint64_t offset = 0;
      if (t.offset) {
        offset = *t.offset;
      } else {
        offset = pad(cursor);
        cursor = offset + t.n_bytes.value_or(natural_bytes(t));
      }
      e.put<uint64_t>(offset);
    }
    const size_t data_start = static_cast<size_t>(pad(e.b.size()));
    e.b.resize(data_start, 0);
    const size_t data_size = static_cast<size_t>(pad(cursor));
    for (size_t i = 0; i < data_size; ++i) e.b.push_back(data_pattern(i));
    return e.b;
  }
};

// A small file using every value type, nested arrays and four tensor types (~1.7 KB).
RawGguf sample_raw() {
  RawGguf g;
  g.kvs = {
      kv("general.architecture", VT::STRING, enc_str("llama")),
      kv("t.u8", VT::U8, enc<uint8_t>(200)),
      kv("t.i8", VT::I8, enc<int8_t>(-100)),
      kv("t.u16", VT::U16, enc<uint16_t>(60000)),
      kv("t.i16", VT::I16, enc<int16_t>(-30000)),
      kv("t.u32", VT::U32, enc<uint32_t>(4000000000u)),
      kv("t.i32", VT::I32, enc<int32_t>(-2000000000)),
      kv("t.f32", VT::F32, enc<float>(1.5f)),
      kv("t.bool", VT::BOOL, enc<uint8_t>(1)),
      kv("t.bool0", VT::BOOL, enc<uint8_t>(0)),
      kv("t.string", VT::STRING, enc_str("h\xc3\xa9llo")),
      kv("t.u64", VT::U64, enc<uint64_t>((uint64_t{1} << 63) + 5)),
      kv("t.i64", VT::I64, enc<int64_t>(-(int64_t{1} << 40))),
      kv("t.f64", VT::F64, enc<double>(3.25)),
      kv("t.arr_u8", VT::ARRAY, arr_of<uint8_t>(VT::U8, {1, 2, 255})),
      kv("t.arr_i8", VT::ARRAY, arr_of<int8_t>(VT::I8, {-1, 2})),
      kv("t.arr_u16", VT::ARRAY, arr_of<uint16_t>(VT::U16, {65535})),
      kv("t.arr_i16", VT::ARRAY, arr_of<int16_t>(VT::I16, {-32768, 7})),
      kv("t.arr_u32", VT::ARRAY, arr_of<uint32_t>(VT::U32, {1, 4294967295u})),
      kv("t.arr_i32", VT::ARRAY, arr_of<int32_t>(VT::I32, {-5, 6, 7})),
      kv("t.arr_f32", VT::ARRAY, arr_of<float>(VT::F32, {0.5f, -2.0f})),
      kv("t.arr_bool", VT::ARRAY, arr_of<uint8_t>(VT::BOOL, {1, 0, 1})),
      kv("t.arr_u64", VT::ARRAY, arr_of<uint64_t>(VT::U64, {uint64_t{1} << 40})),
      kv("t.arr_i64", VT::ARRAY, arr_of<int64_t>(VT::I64, {-3, int64_t{1} << 50})),
      kv("t.arr_f64", VT::ARRAY, arr_of<double>(VT::F64, {0.25, 1e300})),
      kv("t.arr_empty", VT::ARRAY, arr(VT::I32, 0, {})),
      kv("t.arr_str", VT::ARRAY, arr_of_strings({"<unk>", "", "\xe2\x96\x81the", "tok"})),
      // [[1, 2], [3]] as an array of i32 arrays.
      kv("t.nested", VT::ARRAY,
         arr(VT::ARRAY, 2, Enc().raw(arr_of<int32_t>(VT::I32, {1, 2})).raw(arr_of<int32_t>(VT::I32, {3})).b)),
  };
  g.tensors = {
      {"w.f32", {8, 2}, static_cast<uint32_t>(GgmlType::F32), {}, {}},
      {"w.f16", {16}, static_cast<uint32_t>(GgmlType::F16), {}, {}},
      {"w.q8_0", {32, 2}, static_cast<uint32_t>(GgmlType::Q8_0), {}, {}},
      {"w.q4_k", {256, 1, 1}, static_cast<uint32_t>(GgmlType::Q4_K), {}, {}},
  };
  return g;
}

// The same kind of file through the public writer.
GgufWriter sample_writer(uint32_t alignment = 32) {
  GgufWriter w(alignment);
  w.set_string("general.architecture", "llama");
  w.set_u32("w.u32", 7);
  w.set_i32("w.i32", -7);
  w.set_u64("w.u64", uint64_t{1} << 33);
  w.set_f32("w.f32", 0.125f);
  w.set_bool("w.bool", true);
  w.set_strings("w.strings", {"a", "bc", ""});
  w.set_f32s("w.f32s", {1.0f, 2.0f});
  w.set_i32s("w.i32s", {3, -4});
  std::vector<uint8_t> f32(8 * 2 * 4), f16(16 * 2), q8(2 * 34), q4k(144);
  for (size_t i = 0; i < f32.size(); ++i) f32[i] = static_cast<uint8_t>(i + 1);
  for (size_t i = 0; i < f16.size(); ++i) f16[i] = static_cast<uint8_t>(0x40 + i);
  for (size_t i = 0; i < q8.size(); ++i) q8[i] = static_cast<uint8_t>(0x80 + i);
  for (size_t i = 0; i < q4k.size(); ++i) q4k[i] = static_cast<uint8_t>(0xA0 ^ i);
  w.add_tensor("t.f32", GgmlType::F32, {8, 2}, f32);
  w.add_tensor("t.f16", GgmlType::F16, {16}, f16);
  w.add_tensor("t.q8_0", GgmlType::Q8_0, {32, 2}, q8);
  w.add_tensor("t.q4_k", GgmlType::Q4_K, {256, 1}, q4k);
  return w;
}

// ---------------------------------------------------------------------------------------------------------
// Parsing helpers.

// Parses an exactly-sized heap copy (so ASan sees any over-read); the copy lives as long as the file.
struct Parsed {
  std::unique_ptr<uint8_t[]> buffer;
  std::shared_ptr<const GgufFile> file;
};
Parsed parse_copy(const Bytes& bytes, size_t n) {
  Parsed p;
  p.buffer.reset(new uint8_t[n == 0 ? 1 : n]);
  if (n != 0) std::memcpy(p.buffer.get(), bytes.data(), n);
  p.file = GgufFile::parse(std::span<const uint8_t>(p.buffer.get(), n), kOrigin);
  return p;
}
Parsed parse_copy(const Bytes& bytes) { return parse_copy(bytes, bytes.size()); }

::testing::AssertionResult fails_with(const Bytes& bytes, errc code, std::string_view needle) {
  try {
    parse_copy(bytes);
  } catch (const Exception& e) {
    const std::string msg = e.what();
    if (e.code() != code) {
      return ::testing::AssertionFailure() << "wrong code " << errc_name(e.code()) << ": " << msg;
    }
    if (msg.find(needle) == std::string::npos) {
      return ::testing::AssertionFailure() << "message lacks \"" << needle << "\": " << msg;
    }
    if (msg.find(kOrigin) == std::string::npos) {
      return ::testing::AssertionFailure() << "message does not name the file: " << msg;
    }
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "non-ilre exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "parsed successfully; expected an error containing \"" << needle << "\"";
}
::testing::AssertionResult bad(const Bytes& bytes, std::string_view needle) {
  return fails_with(bytes, errc::bad_gguf, needle);
}

template <class T>
void poke(Bytes& b, size_t at, T v) {
  ASSERT_LE(at + sizeof(T), b.size());
  std::memcpy(b.data() + at, &v, sizeof(T));
}

// Byte offset of the first occurrence of a length-prefixed string (where its u64 length starts).
size_t find_string_field(const Bytes& b, std::string_view s) {
  const Bytes needle = enc_str(s);
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  EXPECT_NE(it, b.end()) << "no field " << s;
  return static_cast<size_t>(it - b.begin());
}

// Expects the file to parse; touches every tensor's first and last byte and every metadata value via its getter.
void touch_everything(const GgufFile& f) {
  volatile uint8_t sink = 0;
  for (const GgufTensor& t : f.tensors()) {
    ASSERT_GT(t.n_bytes, 0u);
    sink = sink + t.data[0] + t.data[t.n_bytes - 1];
    EXPECT_EQ(f.find_tensor(t.name), &t);
  }
  for (const auto& entry : f.metadata()) {
    const std::string& key = entry.first;  // not a structured binding: clang 14 cannot capture those
    const GgufValue& value = entry.second;
    // Each getter either returns or throws bad_gguf for the wrong type; nothing else.
    auto guarded = [&](auto&& fn) {
      try {
        fn();
      } catch (const Exception& e) {
        EXPECT_EQ(e.code(), errc::bad_gguf) << e.what();
      }
    };
    guarded([&] { (void)f.get_int(key); });
    guarded([&] { (void)f.get_float(key); });
    guarded([&] { (void)f.get_bool(key); });
    guarded([&] { (void)f.get_string(key); });
    guarded([&] { (void)f.get_string_array(key); });
    guarded([&] { (void)f.get_float_array(key); });
    guarded([&] { (void)f.get_int_array(key); });
    (void)value.describe();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Valid files.

TEST(GgufMalformed, SampleFilesParse) {
  const Bytes raw = sample_raw().build();
  EXPECT_GT(raw.size(), 1000u);
  Parsed p = parse_copy(raw);
  EXPECT_EQ(p.file->version(), 3u);
  EXPECT_EQ(p.file->alignment(), 32u);
  EXPECT_EQ(p.file->metadata().size(), sample_raw().kvs.size());
  ASSERT_EQ(p.file->tensors().size(), 4u);
  touch_everything(*p.file);

  const Bytes written = sample_writer().to_bytes();
  Parsed q = parse_copy(written);
  ASSERT_EQ(q.file->tensors().size(), 4u);
  EXPECT_EQ(q.file->get_int("w.u32"), 7);
  EXPECT_EQ(q.file->get_int("w.i32"), -7);
  EXPECT_EQ(q.file->get_int("w.u64"), int64_t{1} << 33);
  EXPECT_EQ(q.file->get_float("w.f32"), 0.125);
  EXPECT_EQ(q.file->get_bool("w.bool"), true);
  EXPECT_EQ(*q.file->get_string_array("w.strings"), (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(q.file->get_float_array("w.f32s"), (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(q.file->get_int_array("w.i32s"), (std::vector<int64_t>{3, -4}));
  touch_everything(*q.file);
}

TEST(GgufMalformed, TensorTableAndDataPointers) {
  const RawGguf g = sample_raw();
  const Bytes bytes = g.build();
  Parsed p = parse_copy(bytes);
  const GgufFile& f = *p.file;
  EXPECT_EQ(f.data_offset() % 32, 0u);
  const GgufTensor& q4k = f.tensor("w.q4_k");
  EXPECT_EQ(q4k.type, GgmlType::Q4_K);
  EXPECT_EQ(q4k.n_dims, 3);
  EXPECT_EQ(q4k.shape_string(), "[256, 1, 1]");
  EXPECT_EQ(q4k.n_bytes, 144u);
  EXPECT_EQ(q4k.row_bytes(), 144u);
  const GgufTensor& q8 = f.tensor("w.q8_0");
  EXPECT_EQ(q8.n_bytes, 68u);
  EXPECT_EQ(q8.row_bytes(), 34u);
  EXPECT_EQ(q8.n_rows(), 2);
  EXPECT_EQ(f.tensor("w.f16").n_bytes, 32u);
  EXPECT_EQ(f.tensor("w.f32").n_elements(), 16);
  for (const GgufTensor& t : f.tensors()) {
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    ASSERT_EQ(t.data, p.buffer.get() + f.data_offset() + t.offset) << t.name;
    for (size_t i = 0; i < t.n_bytes; ++i) {
      ASSERT_EQ(t.data[i], data_pattern(static_cast<size_t>(t.offset) + i)) << t.name << " byte " << i;
    }
  }
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
  try {
    (void)f.tensor("blk.9.missing");
    ADD_FAILURE() << "missing tensor did not throw";
  } catch (const Exception& e) {
    EXPECT_EQ(e.code(), errc::bad_gguf);
    EXPECT_NE(std::string(e.what()).find("'blk.9.missing' is missing"), std::string::npos) << e.what();
  }
}

TEST(GgufMalformed, Version2Parses) {
  RawGguf g = sample_raw();
  g.version = 2;
  Parsed p = parse_copy(g.build());
  EXPECT_EQ(p.file->version(), 2u);
  EXPECT_EQ(p.file->tensors().size(), 4u);
}

TEST(GgufMalformed, NoTensorsNoMetadataParses) {
  RawGguf g;
  Parsed p = parse_copy(g.build());
  EXPECT_TRUE(p.file->metadata().empty());
  EXPECT_TRUE(p.file->tensors().empty());
}

TEST(GgufMalformed, CustomAlignment64) {
  const GgufWriter w = sample_writer(64);
  const Bytes bytes = w.to_bytes();
  const GgufWriter reference = sample_writer(32);
  Parsed ref = parse_copy(reference.to_bytes());

  Parsed p = parse_copy(bytes);
  const GgufFile& f = *p.file;
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_int("general.alignment"), 64);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  ASSERT_EQ(f.tensors().size(), 4u);
  for (const GgufTensor& t : f.tensors()) {
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    EXPECT_EQ(static_cast<size_t>(t.data - p.buffer.get()) % 64, 0u) << t.name;
    const GgufTensor& r = ref.file->tensor(t.name);
    ASSERT_EQ(t.n_bytes, r.n_bytes);
    EXPECT_EQ(std::memcmp(t.data, r.data, t.n_bytes), 0) << t.name << " points at the wrong bytes";
  }
  // The 32-byte-aligned layout packs w.f16 (32 bytes) right after w.f32 (64 bytes); with 64 the next tensor
  // must start a full 64 further on.
  EXPECT_EQ(ref.file->tensor("t.q8_0").offset, 96u);
  EXPECT_EQ(f.tensor("t.q8_0").offset, 128u);

  // Through a real mapping the pointers themselves are 64-byte aligned.
  const std::string path = test::scratch_dir("gguf-malformed") + "/align64.gguf";
  w.write(path);
  auto mapped = GgufFile::open(path);
  for (const GgufTensor& t : mapped->tensors()) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u) << t.name;
    EXPECT_EQ(std::memcmp(t.data, ref.file->tensor(t.name).data, t.n_bytes), 0) << t.name;
  }
}

TEST(GgufMalformed, AllValueTypesRoundTrip) {
  Parsed p = parse_copy(sample_raw().build());
  const GgufFile& f = *p.file;
  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u16"), 60000);
  EXPECT_EQ(f.get_int("t.i16"), -30000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_float("t.f32"), 1.5);
  EXPECT_EQ(f.get_bool("t.bool"), true);
  EXPECT_EQ(f.get_bool("t.bool0"), false);
  EXPECT_EQ(f.get_int("t.bool"), 1);
  EXPECT_EQ(f.get_string("t.string"), "h\xc3\xa9llo");
  EXPECT_EQ(f.require_string("general.architecture"), "llama");
  // u64 keeps its bit pattern in the int64 storage.
  EXPECT_EQ(static_cast<uint64_t>(*f.get_int("t.u64")), (uint64_t{1} << 63) + 5);
  EXPECT_EQ(f.get_int("t.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(f.get_float("t.f64"), 3.25);
  EXPECT_EQ(f.get_float("t.i16"), -30000.0);  // integers are accepted as numbers
  EXPECT_EQ(f.require_float("t.u8"), 200.0);
  EXPECT_EQ(f.require_int("t.i8"), -100);

  EXPECT_EQ(f.get_int_array("t.arr_u8"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(f.get_int_array("t.arr_i8"), (std::vector<int64_t>{-1, 2}));
  EXPECT_EQ(f.get_int_array("t.arr_u16"), (std::vector<int64_t>{65535}));
  EXPECT_EQ(f.get_int_array("t.arr_i16"), (std::vector<int64_t>{-32768, 7}));
  EXPECT_EQ(f.get_int_array("t.arr_u32"), (std::vector<int64_t>{1, 4294967295}));
  EXPECT_EQ(f.get_int_array("t.arr_i32"), (std::vector<int64_t>{-5, 6, 7}));
  EXPECT_EQ(f.get_int_array("t.arr_bool"), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(f.get_int_array("t.arr_u64"), (std::vector<int64_t>{int64_t{1} << 40}));
  EXPECT_EQ(f.get_int_array("t.arr_i64"), (std::vector<int64_t>{-3, int64_t{1} << 50}));
  EXPECT_EQ(f.get_int_array("t.arr_empty"), (std::vector<int64_t>{}));
  EXPECT_EQ(f.get_float_array("t.arr_f32"), (std::vector<double>{0.5, -2.0}));
  EXPECT_EQ(f.get_float_array("t.arr_f64"), (std::vector<double>{0.25, 1e300}));
  EXPECT_EQ(f.get_float_array("t.arr_i32"), (std::vector<double>{-5.0, 6.0, 7.0}));
  ASSERT_NE(f.get_string_array("t.arr_str"), nullptr);
  EXPECT_EQ(*f.get_string_array("t.arr_str"), (std::vector<std::string>{"<unk>", "", "\xe2\x96\x81the", "tok"}));

  const GgufValue* nested = f.find("t.nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_TRUE(nested->is_array);
  EXPECT_EQ(nested->type, VT::ARRAY);
  EXPECT_EQ(nested->describe(), "array[array; 2]");
  ASSERT_EQ(nested->arrays.size(), 2u);
  EXPECT_EQ(nested->arrays[0].ints, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(nested->arrays[1].ints, (std::vector<int64_t>{3}));
  EXPECT_EQ(nested->arrays[1].describe(), "array[i32; 1]");
  EXPECT_EQ(f.find("t.arr_str")->describe(), "array[string; 4]");
  EXPECT_EQ(f.find("t.f64")->describe(), "f64");

  // Every value type name is distinct and known.
  for (uint32_t t = 0; t <= 12; ++t) EXPECT_NE(gguf_value_type_name(static_cast<VT>(t)), "?") << t;

  // Missing keys: optional getters return empty, required ones throw naming the key.
  EXPECT_FALSE(f.get_int("absent").has_value());
  EXPECT_FALSE(f.get_float("absent").has_value());
  EXPECT_FALSE(f.get_bool("absent").has_value());
  EXPECT_FALSE(f.get_string("absent").has_value());
  EXPECT_EQ(f.get_string_array("absent"), nullptr);
  EXPECT_FALSE(f.get_float_array("absent").has_value());
  EXPECT_FALSE(f.get_int_array("absent").has_value());
  for (auto fn : {+[](const GgufFile& g) { (void)g.require_int("absent.key"); },
                  +[](const GgufFile& g) { (void)g.require_float("absent.key"); },
                  +[](const GgufFile& g) { (void)g.require_string("absent.key"); }}) {
    try {
      fn(f);
      ADD_FAILURE() << "required getter did not throw";
    } catch (const Exception& e) {
      EXPECT_EQ(e.code(), errc::bad_gguf);
      EXPECT_NE(std::string(e.what()).find("required key 'absent.key' is missing"), std::string::npos) << e.what();
    }
  }
}

TEST(GgufMalformed, WrongTypeAccessIsBadGguf) {
  Parsed p = parse_copy(sample_raw().build());
  const GgufFile& f = *p.file;
  struct Case {
    const char* what;
    std::function<void()> access;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {"int of string", [&] { (void)f.get_int("t.string"); }, "key 't.string' should be an integer but is string"},
      {"int of f32", [&] { (void)f.get_int("t.f32"); }, "should be an integer but is f32"},
      {"int of array", [&] { (void)f.get_int("t.arr_i32"); }, "should be an integer but is array[i32; 3]"},
      {"require_int of f64", [&] { (void)f.require_int("t.f64"); }, "key 't.f64' should be an integer"},
      {"float of string", [&] { (void)f.get_float("t.string"); }, "should be a number but is string"},
      {"float of array", [&] { (void)f.get_float("t.arr_f32"); }, "should be a number but is array[f32; 2]"},
      {"bool of string", [&] { (void)f.get_bool("t.string"); }, "should be a bool but is string"},
      {"bool of f32", [&] { (void)f.get_bool("t.f32"); }, "should be a bool but is f32"},
      {"string of u32", [&] { (void)f.get_string("t.u32"); }, "key 't.u32' should be a string but is u32"},
      {"string of string array", [&] { (void)f.get_string("t.arr_str"); }, "should be a string but is array[string; 4]"},
      {"string array of i32 array", [&] { (void)f.get_string_array("t.arr_i32"); }, "should be an array of strings"},
      {"string array of string", [&] { (void)f.get_string_array("t.string"); }, "should be an array of strings but is string"},
      {"float array of strings", [&] { (void)f.get_float_array("t.arr_str"); }, "should be an array of numbers"},
      {"float array of scalar", [&] { (void)f.get_float_array("t.f32"); }, "should be an array of numbers but is f32"},
      {"float array of nested", [&] { (void)f.get_float_array("t.nested"); }, "should be an array of numbers"},
      {"int array of f32 array", [&] { (void)f.get_int_array("t.arr_f32"); }, "should be an array of integers"},
      {"int array of nested", [&] { (void)f.get_int_array("t.nested"); }, "should be an array of integers but is array[array; 2]"},
      {"int array of scalar", [&] { (void)f.get_int_array("t.i32"); }, "should be an array of integers but is i32"},
  };
  for (const Case& c : cases) {
    try {
      c.access();
      ADD_FAILURE() << c.what << ": no exception";
    } catch (const Exception& e) {
      EXPECT_EQ(e.code(), errc::bad_gguf) << c.what;
      EXPECT_NE(std::string(e.what()).find(c.needle), std::string::npos) << c.what << ": " << e.what();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Header.

TEST(GgufMalformed, WrongMagic) {
  Bytes b = sample_raw().build();
  b[0] = 'g';
  EXPECT_TRUE(bad(b, "not a GGUF file"));
  Bytes ggml = sample_raw().build();
  poke<uint32_t>(ggml, 0, 0x67676a74);  // the pre-GGUF "ggjt" magic
  EXPECT_TRUE(bad(ggml, "not a GGUF file"));
  EXPECT_TRUE(bad(Bytes{}, "not a GGUF file"));
  EXPECT_TRUE(bad(Bytes{'G', 'G', 'U'}, "not a GGUF file"));
  EXPECT_TRUE(bad(Bytes{'G', 'G', 'U', 'F'}, "truncated while reading version"));
}

TEST(GgufMalformed, UnsupportedVersions) {
  RawGguf g = sample_raw();
  g.version = 1;
  EXPECT_TRUE(bad(g.build(), "GGUF version 1 is obsolete"));
  g.version = 99;
  EXPECT_TRUE(bad(g.build(), "unsupported GGUF version 99"));
  g.version = 0;
  EXPECT_TRUE(bad(g.build(), "unsupported GGUF version 0"));
  g.version = 0x03000000;  // a big-endian v3 file read as little-endian
  EXPECT_TRUE(bad(g.build(), "unsupported GGUF version"));
}

// Every proper prefix of a valid file is rejected (until the data of the last tensor is complete); none reads
// past its end. Checks both the hand-encoded file (all value types, nested arrays) and a writer file.
void check_every_prefix(const Bytes& full) {
  Parsed whole = parse_copy(full);
  size_t needed = whole.file->data_offset();
  for (const GgufTensor& t : whole.file->tensors()) {
    needed = std::max(needed, whole.file->data_offset() + static_cast<size_t>(t.offset) + t.n_bytes);
  }
  ASSERT_LE(needed, full.size());
  ASSERT_GT(needed, full.size() - 64);
  size_t rejected = 0;
  for (size_t n = 0; n < full.size(); ++n) {
    try {
      Parsed p = parse_copy(full, n);
      EXPECT_GE(n, needed) << "prefix of " << n << " bytes parsed although tensor data ends at " << needed;
      EXPECT_EQ(p.file->tensors().size(), whole.file->tensors().size());
    } catch (const Exception& e) {
      EXPECT_EQ(e.code(), errc::bad_gguf) << n << ": " << e.what();
      EXPECT_LT(n, needed) << "prefix of " << n << " bytes rejected: " << e.what();
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "prefix of " << n << " bytes: non-ilre exception " << e.what();
    }
  }
  EXPECT_EQ(rejected, needed);
}

TEST(GgufMalformed, TruncationAtEveryByte) {
  check_every_prefix(sample_raw().build());
  check_every_prefix(sample_writer().to_bytes());
  check_every_prefix(sample_writer(64).to_bytes());
}

TEST(GgufMalformed, TruncationMessages) {
  const Bytes full = sample_raw().build();
  const auto prefix = [&](size_t n) { return Bytes(full.begin(), full.begin() + static_cast<long>(n)); };
  EXPECT_TRUE(bad(prefix(20), "truncated while reading metadata count at byte 16"));
  const size_t key = find_string_field(full, "t.nested");  // the last key: the count check passes
  EXPECT_TRUE(bad(prefix(key + 4), "truncated while reading metadata key at byte " + std::to_string(key)));
  EXPECT_TRUE(bad(prefix(key + 8 + 8 + 2), "truncated while reading metadata value type"));
  EXPECT_TRUE(bad(prefix(key + 8 + 8 + 4 + 2), "truncated while reading array element type"));
  EXPECT_TRUE(bad(prefix(key + 8 + 8 + 4 + 4 + 3), "truncated while reading array length"));
  const size_t piece = find_string_field(full, "tok");  // the last element of t.arr_str
  EXPECT_TRUE(bad(prefix(piece + 8 + 1), "string value: string length 3 exceeds the 1 bytes left in the file"));
  // One byte short of the last tensor's data (the file ends with alignment padding after it).
  Parsed whole = parse_copy(full);
  const GgufTensor& last = whole.file->tensor("w.q4_k");
  const size_t end = whole.file->data_offset() + static_cast<size_t>(last.offset) + last.n_bytes;
  ASSERT_LT(end, full.size());
  EXPECT_TRUE(bad(Bytes(full.begin(), full.begin() + static_cast<long>(end) - 1),
                  "tensor 'w.q4_k' (144 bytes at offset 192) extends past the end of the file"));
  EXPECT_NO_THROW(parse_copy(Bytes(full.begin(), full.begin() + static_cast<long>(end))));
}

// ---------------------------------------------------------------------------------------------------------
// Counts and lengths that cannot fit: rejected before anything is allocated for them.

struct HostileCase {
  std::string name;
  Bytes bytes;
  std::string needle;
};

std::vector<HostileCase> hostile_count_cases() {
  std::vector<HostileCase> cases;
  const Bytes base = sample_raw().build();
  for (uint64_t huge : {uint64_t{100'000'000}, uint64_t{1} << 32, uint64_t{1} << 40, uint64_t{1} << 62,
                        std::numeric_limits<uint64_t>::max()}) {
    const std::string h = std::to_string(huge);
    {
      Bytes b = base;
      std::memcpy(b.data() + 8, &huge, 8);
      cases.push_back({"tensor count " + h, b, "tensor table: count " + h + " cannot fit"});
    }
    {
      Bytes b = base;
      std::memcpy(b.data() + 16, &huge, 8);
      cases.push_back({"kv count " + h, b, "metadata: count " + h + " cannot fit"});
    }
    // Array lengths of every element size: the element count is checked against the bytes left.
    for (const char* key : {"t.arr_u8", "t.arr_bool", "t.arr_i32", "t.arr_f64", "t.arr_str", "t.nested"}) {
      Bytes b = base;
      const size_t at = find_string_field(b, key) + 8 + std::strlen(key) + 4 + 4;  // key, value type, elem type
      std::memcpy(b.data() + at, &huge, 8);
      cases.push_back({std::string(key) + " length " + h, b, std::string("key '") + key + "' array: count " + h});
    }
    // String lengths: a key, a string value, an element of a string array, a tensor name.
    {
      Bytes b = base;
      const size_t at = find_string_field(b, "t.u8");
      std::memcpy(b.data() + at, &huge, 8);
      cases.push_back({"key length " + h, b, "metadata key: string length " + h + " exceeds"});
    }
    {
      Bytes b = base;
      const size_t at = find_string_field(b, "h\xc3\xa9llo");
      std::memcpy(b.data() + at, &huge, 8);
      cases.push_back({"string value length " + h, b, "string value: string length " + h + " exceeds"});
    }
    {
      Bytes b = base;
      const size_t at = find_string_field(b, "\xe2\x96\x81the");
      std::memcpy(b.data() + at, &huge, 8);
      cases.push_back({"string element length " + h, b, "string value: string length " + h + " exceeds"});
    }
    {
      Bytes b = base;
      const size_t at = find_string_field(b, "w.q8_0");
      std::memcpy(b.data() + at, &huge, 8);
      cases.push_back({"tensor name length " + h, b, "tensor name: string length " + h + " exceeds"});
    }
    {
      Bytes b = base;
      const size_t at = find_string_field(b, "w.f16") + 8 + 5;  // n_dims
      const uint32_t dims = static_cast<uint32_t>(huge);
      std::memcpy(b.data() + at, &dims, 4);
      cases.push_back({"n_dims " + h, b, "'w.f16' has " + std::to_string(dims) + " dimensions"});
    }
  }
  return cases;
}

// Address space of this process in bytes (VmSize).
size_t address_space_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0;
  statm >> pages;
  return pages * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

TEST(GgufMalformed, HugeCountsRejectedBeforeAllocating) {
  const std::vector<HostileCase> cases = hostile_count_cases();
  ASSERT_GT(cases.size(), 50u);
  // In-process first, for readable failures.
  for (const HostileCase& c : cases) EXPECT_TRUE(bad(c.bytes, c.needle)) << c.name;

  // Then in a forked child whose address space may grow by at most 256 MB: a reader that reserved memory for
  // a hostile count before checking it (or that read it element by element into a vector) would die here
  // even where overcommit lets the allocation succeed in-process.
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(20);  // a hang is a failure too
    struct rlimit lim {};
    lim.rlim_cur = lim.rlim_max = address_space_bytes() + (size_t{256} << 20);
    if (::setrlimit(RLIMIT_AS, &lim) != 0) ::_exit(90);
    int index = 0;
    for (const HostileCase& c : cases) {
      ++index;
      try {
        GgufFile::parse(c.bytes, kOrigin);
        std::fprintf(stderr, "hostile case '%s' parsed\n", c.name.c_str());
        ::_exit(1);
      } catch (const Exception& e) {
        if (e.code() != errc::bad_gguf) ::_exit(2);
      } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "hostile case '%s': bad_alloc under a 256 MB address-space cap\n", c.name.c_str());
        ::_exit(3);
      } catch (...) {
        ::_exit(4);
      }
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : -1);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: parsed, 2: wrong code, 3: bad_alloc, 4: other exception, 90: setrlimit";
}

// The rlimit in the test above really does catch an absurd allocation (so that test can fail).
TEST(GgufMalformed, AddressSpaceCapCatchesLargeAllocation) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan reports the failed allocation itself";
#else
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct rlimit lim {};
    lim.rlim_cur = lim.rlim_max = address_space_bytes() + (size_t{256} << 20);
    if (::setrlimit(RLIMIT_AS, &lim) != 0) ::_exit(90);
    try {
      std::vector<int64_t> v;
      v.reserve(100'000'000);  // 800 MB
      ::_exit(1);
    } catch (const std::bad_alloc&) {
      ::_exit(0);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
#endif
}

// ---------------------------------------------------------------------------------------------------------
// Metadata.

RawGguf minimal_with(std::vector<Bytes> kvs) {
  RawGguf g;
  g.kvs = std::move(kvs);
  g.tensors = {{"w", {32}, static_cast<uint32_t>(GgmlType::F32), {}, {}}};
  return g;
}

TEST(GgufMalformed, UnknownValueType) {
  EXPECT_TRUE(bad(minimal_with({kv("k", 13u, enc<uint32_t>(0))}).build(), "key 'k': unknown value type 13"));
  EXPECT_TRUE(bad(minimal_with({kv("k", 0xFFFFFFFFu, enc<uint32_t>(0))}).build(), "unknown value type 4294967295"));
  EXPECT_TRUE(bad(minimal_with({kv("k", VT::ARRAY, arr(13u, 1, enc<uint32_t>(0)))}).build(),
                  "key 'k': unknown array element type 13"));
  // A nested array whose inner element type is unknown.
  EXPECT_TRUE(bad(minimal_with({kv("k", VT::ARRAY, arr(VT::ARRAY, 1, arr(77u, 0, {})))}).build(),
                  "unknown array element type 77"));
}

TEST(GgufMalformed, BoolMustBeZeroOrOne) {
  EXPECT_TRUE(bad(minimal_with({kv("flag", VT::BOOL, enc<uint8_t>(2))}).build(), "key 'flag': bool value 2 is neither 0 nor 1"));
  EXPECT_TRUE(bad(minimal_with({kv("flags", VT::ARRAY, arr_of<uint8_t>(VT::BOOL, {0, 1, 255}))}).build(),
                  "key 'flags': bool value 255"));
}

TEST(GgufMalformed, EmptyKeyAndDuplicateKey) {
  EXPECT_TRUE(bad(minimal_with({kv("a", VT::U8, enc<uint8_t>(1)), kv("", VT::U8, enc<uint8_t>(1))}).build(),
                  "metadata entry 1 has an empty key"));
  EXPECT_TRUE(bad(minimal_with({kv("general.name", VT::STRING, enc_str("x")), kv("b", VT::U8, enc<uint8_t>(1)),
                                kv("general.name", VT::STRING, enc_str("y"))})
                      .build(),
                  "duplicate metadata key 'general.name'"));
  // Same key with a different type is still a duplicate.
  EXPECT_TRUE(bad(minimal_with({kv("k", VT::U8, enc<uint8_t>(1)), kv("k", VT::U32, enc<uint32_t>(1))}).build(),
                  "duplicate metadata key 'k'"));
}

TEST(GgufMalformed, NestedArrayDepth) {
  const Bytes leaf = arr_of<int32_t>(VT::I32, {1});
  const Bytes depth2 = arr(VT::ARRAY, 1, leaf);  // [[1]]
  const Bytes depth3 = arr(VT::ARRAY, 1, depth2);  // [[[1]]]
  const Bytes depth4 = arr(VT::ARRAY, 1, depth3);  // [[[[1]]]]
  Parsed ok = parse_copy(minimal_with({kv("k", VT::ARRAY, depth3)}).build());
  EXPECT_EQ(ok.file->find("k")->arrays.at(0).arrays.at(0).ints, (std::vector<int64_t>{1}));
  EXPECT_TRUE(bad(minimal_with({kv("k", VT::ARRAY, depth4)}).build(), "key 'k': arrays nested deeper than 3"));
  // Deep nesting with a lying element count cannot recurse without bound: the depth check comes first.
  Bytes deep = leaf;
  for (int i = 0; i < 200; ++i) deep = arr(VT::ARRAY, 1, deep);
  EXPECT_TRUE(bad(minimal_with({kv("k", VT::ARRAY, deep)}).build(), "nested deeper than 3"));
}

TEST(GgufMalformed, Alignment) {
  const auto with_alignment = [](const Bytes& value_kv) {
    RawGguf g = minimal_with({value_kv});
    return g.build();
  };
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::U32, enc<uint32_t>(0))), "general.alignment 0 is not a power of two"));
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::U32, enc<uint32_t>(3))), "general.alignment 3 is not a power of two"));
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::U32, enc<uint32_t>(48))), "general.alignment 48 is not a power of two"));
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::U64, enc<uint64_t>(32))), "general.alignment must be a u32, found u64"));
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::STRING, enc_str("32"))), "general.alignment must be a u32, found string"));
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::ARRAY, arr_of<uint32_t>(VT::U32, {32}))),
                  "general.alignment must be a u32, found array[u32; 1]"));
  // Powers of two below 8 break the spec's "multiple of 8" and would put tensor data at odd addresses.
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::U32, enc<uint32_t>(1))), "general.alignment 1 is less than 8"));
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::U32, enc<uint32_t>(2))), "general.alignment 2 is less than 8"));
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::U32, enc<uint32_t>(4))), "general.alignment 4 is less than 8"));
  // A huge (but power-of-two) alignment pushes the data section past the end of the file.
  EXPECT_TRUE(bad(with_alignment(kv("general.alignment", VT::U32, enc<uint32_t>(1u << 31))), "truncated before the tensor data section"));

  // The smallest valid alignment, 8: an f16 tensor of 4 elements (8 bytes) is followed directly by the next.
  {
    RawGguf g8;
    g8.alignment = 8;
    g8.kvs = {kv("general.alignment", VT::U32, enc<uint32_t>(8))};
    g8.tensors = {{"h", {4}, static_cast<uint32_t>(GgmlType::F16), {}, {}},
                  {"f", {3}, static_cast<uint32_t>(GgmlType::F32), {}, {}}};
    Parsed p8 = parse_copy(g8.build());
    EXPECT_EQ(p8.file->alignment(), 8u);
    EXPECT_EQ(p8.file->data_offset() % 8, 0u);
    EXPECT_EQ(p8.file->tensor("f").offset, 8u);
    EXPECT_EQ(p8.file->tensor("f").data, p8.file->tensor("h").data + 8);
  }

  // A valid alignment of 128: tensors placed on 128-byte boundaries parse, a 32-byte one is misaligned.
  RawGguf g = minimal_with({kv("general.alignment", VT::U32, enc<uint32_t>(128))});
  g.alignment = 128;
  g.tensors.push_back({"v", {8}, static_cast<uint32_t>(GgmlType::F32), {}, {}});
  Parsed p = parse_copy(g.build());
  EXPECT_EQ(p.file->alignment(), 128u);
  EXPECT_EQ(p.file->data_offset() % 128, 0u);
  EXPECT_EQ(p.file->tensor("v").offset, 128u);
  g.tensors.push_back({"x", {8}, static_cast<uint32_t>(GgmlType::F32), uint64_t{160}, {}});
  EXPECT_TRUE(bad(g.build(), "tensor 'x' offset 160 is not aligned to 128"));
}

// ---------------------------------------------------------------------------------------------------------
// Tensor table.

RawGguf with_tensor(RawTensor t) {
  RawGguf g;
  g.kvs = {kv("general.architecture", VT::STRING, enc_str("llama"))};
  g.tensors = {{"ok", {32}, static_cast<uint32_t>(GgmlType::F32), {}, {}}, std::move(t)};
  return g;
}

TEST(GgufMalformed, UnknownTensorType) {
  EXPECT_TRUE(bad(with_tensor({"t", {32}, 4, {}, uint64_t{64}}).build(), "tensor 't' has unknown type id 4"));  // removed Q4_2
  EXPECT_TRUE(bad(with_tensor({"t", {32}, 31, {}, uint64_t{64}}).build(), "unknown type id 31"));
  EXPECT_TRUE(bad(with_tensor({"t", {32}, 1000, {}, uint64_t{64}}).build(), "unknown type id 1000"));
  EXPECT_TRUE(bad(with_tensor({"t", {32}, 0xFFFFFFFF, {}, uint64_t{64}}).build(), "unknown type id 4294967295"));
}

TEST(GgufMalformed, DimensionCount) {
  EXPECT_TRUE(bad(with_tensor({"t", {}, 0, {}, uint64_t{64}}).build(), "tensor 't' has 0 dimensions (1..4 allowed)"));
  EXPECT_TRUE(bad(with_tensor({"t", {2, 2, 2, 2, 2}, 0, {}, uint64_t{64}}).build(), "tensor 't' has 5 dimensions"));
  // Four dimensions are fine.
  Parsed p = parse_copy(with_tensor({"t", {2, 2, 2, 2}, 0, {}, {}}).build());
  EXPECT_EQ(p.file->tensor("t").n_dims, 4);
  EXPECT_EQ(p.file->tensor("t").n_elements(), 16);
  EXPECT_EQ(p.file->tensor("t").n_bytes, 64u);
}

TEST(GgufMalformed, ZeroAndHugeDimensions) {
  EXPECT_TRUE(bad(with_tensor({"t", {32, 0}, 0, {}, uint64_t{64}}).build(), "tensor 't' dimension 1 is 0"));
  EXPECT_TRUE(bad(with_tensor({"t", {0}, 0, {}, uint64_t{64}}).build(), "tensor 't' dimension 0 is 0"));
  EXPECT_TRUE(bad(with_tensor({"t", {uint64_t{1} << 63}, 0, {}, uint64_t{64}}).build(),
                  "tensor 't' dimension 0 is 9223372036854775808"));
  EXPECT_TRUE(bad(with_tensor({"t", {~uint64_t{0}}, 0, {}, uint64_t{64}}).build(), "dimension 0 is 18446744073709551615"));
}

TEST(GgufMalformed, ElementAndByteCountOverflow) {
  EXPECT_TRUE(bad(with_tensor({"t", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, {}, uint64_t{64}}).build(),
                  "tensor 't' element count overflows"));
  EXPECT_TRUE(bad(with_tensor({"t", {4, uint64_t{1} << 31, uint64_t{1} << 31, 2}, 0, {}, uint64_t{64}}).build(),
                  "element count overflows"));
  // 2^62 f32 elements fit in int64 but their 2^64 bytes do not.
  EXPECT_TRUE(bad(with_tensor({"t", {uint64_t{1} << 31, uint64_t{1} << 31}, 0, {}, uint64_t{64}}).build(),
                  "tensor 't' byte size overflows"));
  // Representable but enormous: rejected as past the end of the file.
  EXPECT_TRUE(bad(with_tensor({"t", {uint64_t{1} << 20, uint64_t{1} << 20}, 0, {}, uint64_t{64}}).build(),
                  "tensor 't' (4398046511104 bytes at offset 128) extends past the end of the file"));
}

TEST(GgufMalformed, RowNotWholeBlocks) {
  EXPECT_TRUE(bad(with_tensor({"t", {100, 2}, static_cast<uint32_t>(GgmlType::Q4_K), {}, uint64_t{288}}).build(),
                  "tensor 't' of type q4_K: row length 100 is not a multiple of the block size 256"));
  EXPECT_TRUE(bad(with_tensor({"t", {48}, static_cast<uint32_t>(GgmlType::Q8_0), {}, uint64_t{68}}).build(),
                  "row length 48 is not a multiple of the block size 32"));
  // Blocks are per row: 128 x 2 = 256 elements is still not a whole Q4_K row.
  EXPECT_TRUE(bad(with_tensor({"t", {128, 2}, static_cast<uint32_t>(GgmlType::Q4_K), {}, uint64_t{144}}).build(),
                  "row length 128 is not a multiple of the block size 256"));
}

TEST(GgufMalformed, Offsets) {
  EXPECT_TRUE(bad(with_tensor({"t", {8}, 0, uint64_t{4}, {}}).build(), "tensor 't' offset 4 is not aligned to 32"));
  EXPECT_TRUE(bad(with_tensor({"t", {8}, 0, uint64_t{4096}, {}}).build(),
                  "tensor 't' (32 bytes at offset 4096) extends past the end of the file"));
  EXPECT_TRUE(bad(with_tensor({"t", {8}, 0, uint64_t{1} << 63, {}}).build(), "extends past the end of the file"));
  EXPECT_TRUE(bad(with_tensor({"t", {8}, 0, ~uint64_t{31}, {}}).build(), "extends past the end of the file"));
  // Starts inside the file but runs past its end: "ok" occupies [0, 128), the file data ends at 128.
  EXPECT_TRUE(bad(with_tensor({"t", {32}, 0, uint64_t{96}, {}}).build(), "tensor 't' (128 bytes at offset 96) extends past"));
}

TEST(GgufMalformed, OverlappingTensors) {
  RawGguf g;
  g.tensors = {{"a", {64}, 0, {}, {}}, {"b", {8}, 0, uint64_t{32}, {}}};  // a: [0, 256), b: [32, 64)
  EXPECT_TRUE(bad(g.build(), "tensors 'a' and 'b' overlap"));
  g.tensors = {{"a", {64}, 0, {}, {}}, {"b", {8}, 0, uint64_t{0}, {}}};  // same start
  EXPECT_TRUE(bad(g.build(), "overlap"));
  g.tensors = {{"a", {64}, 0, {}, {}}, {"b", {8}, 0, uint64_t{224}, {}}};  // the last 32 bytes of a
  EXPECT_TRUE(bad(g.build(), "overlap"));
  // Listed out of offset order: a (auto, 256 bytes reserved, 128 used) = [0, 128), b = [128, 160) and
  // c = [96, 160) overlap although the table order hides it.
  g.tensors = {{"b", {8}, 0, uint64_t{128}, {}}, {"a", {32}, 0, {}, uint64_t{256}}, {"c", {16}, 0, uint64_t{96}, {}}};
  EXPECT_TRUE(bad(g.build(), "tensors 'a' and 'c' overlap"));
  // Touching but not overlapping, listed out of order: fine.
  g.tensors = {{"b", {8}, 0, uint64_t{128}, {}}, {"a", {32}, 0, {}, uint64_t{256}}};
  Parsed p = parse_copy(g.build());
  EXPECT_EQ(p.file->tensor("a").offset, 0u);
  EXPECT_EQ(p.file->tensor("b").offset, 128u);
  EXPECT_EQ(p.file->tensor("b").data, p.file->tensor("a").data + 128);
}

TEST(GgufMalformed, DuplicateAndEmptyTensorNames) {
  EXPECT_TRUE(bad(with_tensor({"ok", {8}, 0, {}, {}}).build(), "duplicate tensor name 'ok'"));
  EXPECT_TRUE(bad(with_tensor({"", {8}, 0, {}, {}}).build(), "tensor 1 has an empty name"));
}

// ---------------------------------------------------------------------------------------------------------
// Random corruption of a valid file: each mutant either parses or throws ilre::Exception.

TEST(GgufMalformed, RandomCorruption) {
  const Bytes base = sample_raw().build();
  ASSERT_GT(base.size(), 1500u);
  ASSERT_LT(base.size(), 2500u);
  std::mt19937_64 rng(20240601);
  const uint64_t interesting[] = {0,
                                  1,
                                  2,
                                  31,
                                  32,
                                  0x7F,
                                  0xFF,
                                  0xFFFF,
                                  0x7FFFFFFF,
                                  0xFFFFFFFF,
                                  uint64_t{1} << 32,
                                  uint64_t{1} << 40,
                                  uint64_t{1} << 62,
                                  uint64_t{1} << 63,
                                  ~uint64_t{0},
                                  static_cast<uint64_t>(base.size()),
                                  static_cast<uint64_t>(base.size()) - 8};
  int parsed = 0, rejected = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int iter = 0; iter < 3000; ++iter) {
    Bytes b = base;
    const int n_mut = 1 + static_cast<int>(rng() % 6);
    for (int m = 0; m < n_mut; ++m) {
      const size_t at = rng() % b.size();
      switch (rng() % 4) {
        case 0: b[at] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;     // bit flip
        case 1: b[at] = static_cast<uint8_t>(rng()); break;                   // random byte
        case 2: {                                                             // interesting word at a field
          const uint64_t v = interesting[rng() % std::size(interesting)];
          const size_t width = (rng() % 2) ? 8 : 4;
          if (b.size() < width) break;
          const size_t pos = std::min(at & ~size_t{3}, b.size() - width);
          std::memcpy(b.data() + pos, &v, width);
          break;
        }
        default:                                                             // truncate
          if (rng() % 4 == 0) b.resize(at + 1);
          break;
      }
    }
    try {
      Parsed p = parse_copy(b);
      ++parsed;
      touch_everything(*p.file);
    } catch (const Exception& e) {
      ++rejected;
      ASSERT_EQ(e.code(), errc::bad_gguf) << "iteration " << iter << ": " << e.what();
      ASSERT_NE(std::string(e.what()).find(kOrigin), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": non-ilre exception " << typeid(e).name() << ": " << e.what();
    } catch (...) {
      FAIL() << "iteration " << iter << ": unknown exception";
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Both outcomes must occur, or the mutator is not exercising the reader.
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rejected, 1000);
  EXPECT_LT(seconds, 10.0);
  RecordProperty("parsed", parsed);
  RecordProperty("rejected", rejected);
}

}  // namespace
}  // namespace ilre::model
