#include "model/gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "ilre/error.h"

namespace ilre::model {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr int kMaxArrayDepth = 3;        // nested arrays are legal but no real model nests deeper
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw Exception(errc::bad_gguf, "'" + origin + "': " + what);
}

// Bounds-checked little-endian reader over the file bytes. Every read names what it was reading so the
// error for a truncated file says where it ran out.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, const std::string& origin) : bytes_(bytes), origin_(origin) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  template <class T>
  T read(const char* what) {
    T value;
    need(sizeof(T), what);
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining()) {
      fail(origin_, std::string(what) + ": string length " + std::to_string(len) + " exceeds the " +
                        std::to_string(remaining()) + " bytes left in the file");
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  // Rejects a count of items that could not possibly fit in the rest of the file, before anything is
  // allocated for them.
  void check_count(uint64_t count, uint64_t min_item_bytes, const std::string& what) const {
    if (min_item_bytes != 0 && count > remaining() / min_item_bytes) {
      fail(origin_, what + ": count " + std::to_string(count) + " cannot fit in the " +
                        std::to_string(remaining()) + " bytes left in the file");
    }
  }

  [[noreturn]] void error(const std::string& what) const { fail(origin_, what); }

 private:
  void need(size_t n, const char* what) const {
    if (n > remaining()) {
      fail(origin_, std::string("truncated while reading ") + what + " at byte " + std::to_string(pos_));
    }
  }

  std::span<const uint8_t> bytes_;
  const std::string& origin_;
  size_t pos_ = 0;
};

// Smallest encoding of one value of a type: lets check_count bound array lengths.
uint64_t min_value_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::U8:
    case GgufValueType::I8:
    case GgufValueType::BOOL: return 1;
    case GgufValueType::U16:
    case GgufValueType::I16: return 2;
    case GgufValueType::U32:
    case GgufValueType::I32:
    case GgufValueType::F32: return 4;
    case GgufValueType::U64:
    case GgufValueType::I64:
    case GgufValueType::F64:
    case GgufValueType::STRING: return 8;
    case GgufValueType::ARRAY: return 12;
  }
  return 1;
}

bool valid_value_type(uint32_t raw) { return raw <= static_cast<uint32_t>(GgufValueType::F64); }

void read_scalar_into(Cursor& cur, GgufValueType type, GgufValue& out, const std::string& key) {
  switch (type) {
    case GgufValueType::U8: out.ints.push_back(cur.read<uint8_t>("u8 value")); return;
    case GgufValueType::I8: out.ints.push_back(cur.read<int8_t>("i8 value")); return;
    case GgufValueType::U16: out.ints.push_back(cur.read<uint16_t>("u16 value")); return;
    case GgufValueType::I16: out.ints.push_back(cur.read<int16_t>("i16 value")); return;
    case GgufValueType::U32: out.ints.push_back(cur.read<uint32_t>("u32 value")); return;
    case GgufValueType::I32: out.ints.push_back(cur.read<int32_t>("i32 value")); return;
    case GgufValueType::U64: out.ints.push_back(static_cast<int64_t>(cur.read<uint64_t>("u64 value"))); return;
    case GgufValueType::I64: out.ints.push_back(cur.read<int64_t>("i64 value")); return;
    case GgufValueType::F32: out.floats.push_back(cur.read<float>("f32 value")); return;
    case GgufValueType::F64: out.floats.push_back(cur.read<double>("f64 value")); return;
    case GgufValueType::BOOL: {
      const uint8_t b = cur.read<uint8_t>("bool value");
      if (b > 1) cur.error("key '" + key + "': bool value " + std::to_string(b) + " is neither 0 nor 1");
      out.ints.push_back(b);
      return;
    }
    case GgufValueType::STRING: out.strings.push_back(cur.read_string("string value")); return;
    case GgufValueType::ARRAY: break;
  }
  cur.error("key '" + key + "': internal: array passed as scalar");
}

GgufValue read_value(Cursor& cur, GgufValueType type, const std::string& key, int depth) {
  GgufValue value;
  if (type != GgufValueType::ARRAY) {
    value.type = type;
    read_scalar_into(cur, type, value, key);
    return value;
  }
  if (depth >= kMaxArrayDepth) cur.error("key '" + key + "': arrays nested deeper than " + std::to_string(kMaxArrayDepth));
  const uint32_t raw_elem = cur.read<uint32_t>("array element type");
  if (!valid_value_type(raw_elem)) {
    cur.error("key '" + key + "': unknown array element type " + std::to_string(raw_elem));
  }
  const auto elem = static_cast<GgufValueType>(raw_elem);
  const uint64_t count = cur.read<uint64_t>("array length");
  cur.check_count(count, min_value_bytes(elem), "key '" + key + "' array");
  value.type = elem;
  value.is_array = true;
  if (elem == GgufValueType::ARRAY) {
    value.arrays.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      // Each element of an array of arrays is itself {element type, count, values}.
      value.arrays.push_back(read_value(cur, GgufValueType::ARRAY, key, depth + 1));
    }
    return value;
  }
  if (elem == GgufValueType::STRING) value.strings.reserve(count);
  else if (elem == GgufValueType::F32 || elem == GgufValueType::F64) value.floats.reserve(count);
  else value.ints.reserve(count);
  for (uint64_t i = 0; i < count; ++i) read_scalar_into(cur, elem, value, key);
  return value;
}

bool mul_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

// ---------------------------------------------------------------------------------------------------------

std::string_view gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::U8: return "u8";
    case GgufValueType::I8: return "i8";
    case GgufValueType::U16: return "u16";
    case GgufValueType::I16: return "i16";
    case GgufValueType::U32: return "u32";
    case GgufValueType::I32: return "i32";
    case GgufValueType::F32: return "f32";
    case GgufValueType::BOOL: return "bool";
    case GgufValueType::STRING: return "string";
    case GgufValueType::ARRAY: return "array";
    case GgufValueType::U64: return "u64";
    case GgufValueType::I64: return "i64";
    case GgufValueType::F64: return "f64";
  }
  return "?";
}

size_t GgufValue::size() const {
  if (type == GgufValueType::ARRAY) return arrays.size();
  if (type == GgufValueType::STRING) return strings.size();
  if (is_float()) return floats.size();
  return ints.size();
}

bool GgufValue::is_integer() const {
  return type != GgufValueType::STRING && type != GgufValueType::ARRAY && !is_float();
}

std::string GgufValue::describe() const {
  std::string t(gguf_value_type_name(type));
  if (!is_array) return t;
  return "array[" + t + "; " + std::to_string(size()) + "]";
}

std::string GgufTensor::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) {
    if (i) s += ", ";
    s += std::to_string(ne[static_cast<size_t>(i)]);
  }
  return s + "]";
}

// ---------------------------------------------------------------------------------------------------------

std::shared_ptr<const GgufFile> GgufFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Exception(errc::io_failed, "cannot open model '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Exception(errc::io_failed, "cannot stat model '" + path + "': " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Exception(errc::io_failed, "model '" + path + "' is not a regular file");
  }
  const auto size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    fail(path, "file is empty");
  }
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (base == MAP_FAILED) {
    throw Exception(errc::io_failed, "cannot map model '" + path + "': " + std::strerror(map_errno));
  }
  std::shared_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->map_base_ = base;
  file->map_size_ = size;
  file->bytes_ = std::span<const uint8_t>(static_cast<const uint8_t*>(base), size);
  file->parse_all();
  return file;
}

std::shared_ptr<const GgufFile> GgufFile::parse(std::span<const uint8_t> bytes, std::string origin) {
  std::shared_ptr<GgufFile> file(new GgufFile());
  file->path_ = std::move(origin);
  file->bytes_ = bytes;
  file->parse_all();
  return file;
}

GgufFile::~GgufFile() {
  if (map_base_ != nullptr) ::munmap(map_base_, map_size_);
}

void GgufFile::parse_all() {
  Cursor cur(bytes_, path_);
  if (bytes_.size() < 4 || cur.read<uint32_t>("magic") != kMagic) {
    fail(path_, "not a GGUF file (magic bytes are not 'GGUF')");
  }
  version_ = cur.read<uint32_t>("version");
  if (version_ == 1) fail(path_, "GGUF version 1 is obsolete and not supported; re-convert the model");
  if (version_ != 2 && version_ != 3) fail(path_, "unsupported GGUF version " + std::to_string(version_));

  const uint64_t n_tensors = cur.read<uint64_t>("tensor count");
  const uint64_t n_kv = cur.read<uint64_t>("metadata count");
  // A key-value pair needs at least 8 (key length) + 4 (type) + 1 (smallest value) bytes; a tensor record
  // at least 8 + 4 + 8 + 4 + 8.
  cur.check_count(n_kv, 13, "metadata");
  cur.check_count(n_tensors, 32, "tensor table");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = cur.read_string("metadata key");
    if (key.empty()) cur.error("metadata entry " + std::to_string(i) + " has an empty key");
    const uint32_t raw_type = cur.read<uint32_t>("metadata value type");
    if (!valid_value_type(raw_type)) {
      cur.error("key '" + key + "': unknown value type " + std::to_string(raw_type));
    }
    GgufValue value = read_value(cur, static_cast<GgufValueType>(raw_type), key, 0);
    if (metadata_.count(key)) cur.error("duplicate metadata key '" + key + "'");
    metadata_.emplace(std::move(key), std::move(value));
  }

  if (const GgufValue* align = find("general.alignment")) {
    if (align->is_array || align->type != GgufValueType::U32) {
      fail(path_, "general.alignment must be a u32, found " + align->describe());
    }
    const auto a = static_cast<uint64_t>(align->ints.at(0));
    if (a == 0 || (a & (a - 1)) != 0) fail(path_, "general.alignment " + std::to_string(a) + " is not a power of two");
    // The spec requires a multiple of 8. Smaller values would let tensor data start at odd or 2/4-byte
    // addresses even in a page-aligned mapping, and the kernels read f16/f32 and block fields in place.
    if (a < 8) fail(path_, "general.alignment " + std::to_string(a) + " is less than 8 (the GGUF spec requires a multiple of 8)");
    alignment_ = a;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = cur.read_string("tensor name");
    if (t.name.empty()) cur.error("tensor " + std::to_string(i) + " has an empty name");
    const uint32_t n_dims = cur.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims) {
      cur.error("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (1..4 allowed)");
    }
    t.n_dims = static_cast<int>(n_dims);
    int64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = cur.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > static_cast<uint64_t>(INT64_MAX)) {
        cur.error("tensor '" + t.name + "' dimension " + std::to_string(d) + " is " + std::to_string(ne));
      }
      t.ne[d] = static_cast<int64_t>(ne);
      if (mul_overflows(n_elements, t.ne[d], &n_elements)) cur.error("tensor '" + t.name + "' element count overflows");
    }
    const uint32_t raw_type = cur.read<uint32_t>("tensor type");
    const std::optional<GgmlTypeInfo> info = ggml_type_info(raw_type);
    if (!info) cur.error("tensor '" + t.name + "' has unknown type id " + std::to_string(raw_type));
    t.type = info->type;
    if (t.ne[0] % info->block_size != 0) {
      cur.error("tensor '" + t.name + "' of type " + std::string(info->name) + ": row length " +
                std::to_string(t.ne[0]) + " is not a multiple of the block size " + std::to_string(info->block_size));
    }
    int64_t n_bytes = 0;
    if (mul_overflows(n_elements / info->block_size, info->block_bytes, &n_bytes)) {
      cur.error("tensor '" + t.name + "' byte size overflows");
    }
    t.n_bytes = static_cast<size_t>(n_bytes);
    t.offset = cur.read<uint64_t>("tensor data offset");
    if (t.offset % alignment_ != 0) {
      cur.error("tensor '" + t.name + "' offset " + std::to_string(t.offset) + " is not aligned to " +
                std::to_string(alignment_));
    }
    if (tensor_index_.count(t.name)) cur.error("duplicate tensor name '" + t.name + "'");
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next alignment boundary after the tensor table.
  data_offset_ = (cur.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (!tensors_.empty() && data_offset_ > bytes_.size()) fail(path_, "truncated before the tensor data section");
  const uint64_t data_size = bytes_.size() >= data_offset_ ? bytes_.size() - data_offset_ : 0;

  std::vector<const GgufTensor*> by_offset;
  by_offset.reserve(tensors_.size());
  for (GgufTensor& t : tensors_) {
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      fail(path_, "tensor '" + t.name + "' (" + std::to_string(t.n_bytes) + " bytes at offset " +
                      std::to_string(t.offset) + ") extends past the end of the file; the file is truncated");
    }
    t.data = bytes_.data() + data_offset_ + t.offset;
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor& prev = *by_offset[i - 1];
    if (prev.offset + prev.n_bytes > by_offset[i]->offset) {
      fail(path_, "tensors '" + prev.name + "' and '" + by_offset[i]->name + "' overlap");
    }
  }
}

// ---------------------------------------------------------------------------------------------------------

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_.find(std::string(key));
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(std::string_view name) const {
  const GgufTensor* t = find_tensor(name);
  if (t == nullptr) fail(path_, "required tensor '" + std::string(name) + "' is missing");
  return *t;
}

namespace {
[[noreturn]] void wrong_type(const std::string& path, std::string_view key, const char* want, const GgufValue& v) {
  fail(path, "key '" + std::string(key) + "' should be " + want + " but is " + v.describe());
}
}  // namespace

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_array || !v->is_integer()) wrong_type(path_, key, "an integer", *v);
  return v->ints.at(0);
}

int64_t GgufFile::require_int(std::string_view key) const {
  auto v = get_int(key);
  if (!v) fail(path_, "required key '" + std::string(key) + "' is missing");
  return *v;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_array) wrong_type(path_, key, "a number", *v);
  if (v->is_float()) return v->floats.at(0);
  if (v->is_integer()) return static_cast<double>(v->ints.at(0));
  wrong_type(path_, key, "a number", *v);
}

double GgufFile::require_float(std::string_view key) const {
  auto v = get_float(key);
  if (!v) fail(path_, "required key '" + std::string(key) + "' is missing");
  return *v;
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_array || !v->is_integer()) wrong_type(path_, key, "a bool", *v);
  return v->ints.at(0) != 0;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_array || v->type != GgufValueType::STRING) wrong_type(path_, key, "a string", *v);
  return v->strings.at(0);
}

std::string GgufFile::require_string(std::string_view key) const {
  auto v = get_string(key);
  if (!v) fail(path_, "required key '" + std::string(key) + "' is missing");
  return *v;
}

const std::vector<std::string>* GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return nullptr;
  if (!v->is_array || v->type != GgufValueType::STRING) wrong_type(path_, key, "an array of strings", *v);
  return &v->strings;
}

std::optional<std::vector<double>> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_array || v->type == GgufValueType::STRING || v->type == GgufValueType::ARRAY) {
    wrong_type(path_, key, "an array of numbers", *v);
  }
  if (v->is_float()) return v->floats;
  return std::vector<double>(v->ints.begin(), v->ints.end());
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_array || !v->is_integer()) wrong_type(path_, key, "an array of integers", *v);
  return v->ints;
}

}  // namespace ilre::model
