#include "model/gguf/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <fstream>

#include "ilre/error.h"

namespace ilre::model {
namespace {

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  // resize + memcpy rather than insert: GCC 12 reports a false -Wstringop-overflow for the insert form.
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void put_key(std::vector<uint8_t>& out, const std::string& key, GgufValueType type) {
  put_string(out, key);
  put<uint32_t>(out, static_cast<uint32_t>(type));
}

}  // namespace

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
  put_key(kv_, key, GgufValueType::U32);
  put(kv_, v);
  ++n_kv_;
}
void GgufWriter::set_i32(const std::string& key, int32_t v) {
  put_key(kv_, key, GgufValueType::I32);
  put(kv_, v);
  ++n_kv_;
}
void GgufWriter::set_u64(const std::string& key, uint64_t v) {
  put_key(kv_, key, GgufValueType::U64);
  put(kv_, v);
  ++n_kv_;
}
void GgufWriter::set_f32(const std::string& key, float v) {
  put_key(kv_, key, GgufValueType::F32);
  put(kv_, v);
  ++n_kv_;
}
void GgufWriter::set_bool(const std::string& key, bool v) {
  put_key(kv_, key, GgufValueType::BOOL);
  put<uint8_t>(kv_, v ? 1 : 0);
  ++n_kv_;
}
void GgufWriter::set_string(const std::string& key, const std::string& v) {
  put_key(kv_, key, GgufValueType::STRING);
  put_string(kv_, v);
  ++n_kv_;
}
void GgufWriter::set_strings(const std::string& key, const std::vector<std::string>& v) {
  put_key(kv_, key, GgufValueType::ARRAY);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::STRING));
  put<uint64_t>(kv_, v.size());
  for (const std::string& s : v) put_string(kv_, s);
  ++n_kv_;
}
void GgufWriter::set_f32s(const std::string& key, const std::vector<float>& v) {
  put_key(kv_, key, GgufValueType::ARRAY);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::F32));
  put<uint64_t>(kv_, v.size());
  for (float f : v) put(kv_, f);
  ++n_kv_;
}
void GgufWriter::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
  put_key(kv_, key, GgufValueType::ARRAY);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::I32));
  put<uint64_t>(kv_, v.size());
  for (int32_t i : v) put(kv_, i);
  ++n_kv_;
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                            std::span<const uint8_t> data) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const std::optional<size_t> row = ggml_row_bytes(type, shape.empty() ? 0 : shape[0]);
  if (shape.empty() || shape.size() > 4 || !row) {
    throw Exception(errc::invalid_argument, "gguf writer: bad shape for tensor '" + name + "'");
  }
  const size_t bytes = *row * static_cast<size_t>(n / shape[0]);
  if (bytes != data.size()) {
    throw Exception(errc::invalid_argument, "gguf writer: tensor '" + name + "' needs " + std::to_string(bytes) +
                                                " bytes, got " + std::to_string(data.size()));
  }
  tensors_.push_back({name, type, shape, std::vector<uint8_t>(data.begin(), data.end())});
}

void GgufWriter::add_f32_tensor(const std::string& name, const std::vector<int64_t>& shape,
                                std::span<const float> data) {
  add_tensor(name, GgmlType::F32, shape,
             std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size_bytes()));
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> out;
  put<uint32_t>(out, 0x46554747);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  const bool custom_alignment = alignment_ != 32;
  put<uint64_t>(out, n_kv_ + (custom_alignment ? 1 : 0));
  out.insert(out.end(), kv_.begin(), kv_.end());
  if (custom_alignment) {
    put_key(out, "general.alignment", GgufValueType::U32);
    put<uint32_t>(out, alignment_);
  }
  uint64_t offset = 0;
  auto pad = [this](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };
  for (const Tensor& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put<uint64_t>(out, static_cast<uint64_t>(d));
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, offset);
    offset = pad(offset + t.data.size());
  }
  out.resize(pad(out.size()), 0);
  for (const Tensor& t : tensors_) {
    out.insert(out.end(), t.data.begin(), t.data.end());
    out.resize(pad(out.size()), 0);
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  const std::vector<uint8_t> bytes = to_bytes();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!f) throw Exception(errc::io_failed, "cannot write '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw Exception(errc::io_failed, "cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  }
}

}  // namespace ilre::model
