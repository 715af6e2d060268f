// GGUF v2/v3 reader: memory-maps a model file, parses and validates its metadata and tensor table.
//
// Every count, length and offset read from the file is checked against the bytes that remain before it is
// used, so a truncated or hostile file yields an Exception(errc::bad_gguf) naming what is wrong instead of an
// out-of-bounds read or a huge allocation. Tensor data stays in the mapping; nothing is copied.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/gguf/ggml_type.h"

namespace ilre::model {

enum class GgufValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

std::string_view gguf_value_type_name(GgufValueType type);

// One metadata value. Scalars of integer/bool type live in `ints` (u64 values keep their bit pattern),
// floats in `floats`, strings in `strings`, nested arrays in `arrays`; a scalar is a one-element vector with
// is_array == false. Typed vectors keep a 262k-entry vocabulary compact.
struct GgufValue {
  GgufValueType type = GgufValueType::U8;       // for arrays: the element type
  bool is_array = false;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufValue> arrays;

  size_t size() const;
  bool is_integer() const;  // U8..I64 and BOOL
  bool is_float() const { return type == GgufValueType::F32 || type == GgufValueType::F64; }
  std::string describe() const;  // "u32", "array[string; 262144]"
};

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  int n_dims = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension, as in ggml
  uint64_t offset = 0;                     // relative to the start of the data section
  size_t n_bytes = 0;
  const uint8_t* data = nullptr;           // points into the mapping

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const { return n_rows() ? n_bytes / static_cast<size_t>(n_rows()) : 0; }
  std::string shape_string() const;  // "[640, 262144]"
};

class GgufFile {
 public:
  // Maps and validates the file. Throws Exception(io_failed) if it cannot be read, (bad_gguf) if malformed.
  static std::shared_ptr<const GgufFile> open(const std::string& path);
  // Parses a buffer the caller keeps alive (fuzzing, tests, embedded models).
  static std::shared_ptr<const GgufFile> parse(std::span<const uint8_t> bytes, std::string origin);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t file_size() const { return bytes_.size(); }
  size_t data_offset() const { return data_offset_; }

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  const GgufValue* find(std::string_view key) const;
  const GgufTensor* find_tensor(std::string_view name) const;
  // Throws bad_gguf naming the tensor if it is missing.
  const GgufTensor& tensor(std::string_view name) const;

  // Typed getters. The required form throws bad_gguf naming the key when it is missing or has the wrong
  // type; the optional form returns nullopt when missing and throws only on a wrong type.
  std::optional<int64_t> get_int(std::string_view key) const;
  int64_t require_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;  // accepts integer values too
  double require_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  std::string require_string(std::string_view key) const;
  const std::vector<std::string>* get_string_array(std::string_view key) const;
  std::optional<std::vector<double>> get_float_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;

 private:
  GgufFile() = default;
  void parse_all();

  std::string path_;
  std::span<const uint8_t> bytes_;
  void* map_base_ = nullptr;  // non-null when this object owns an mmap
  size_t map_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace ilre::model
