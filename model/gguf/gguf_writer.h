// GGUF v3 writer. Tests use it to write tiny random-weight models; tools use it to emit models ilre made.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/gguf/ggml_type.h"
#include "model/gguf/gguf.h"

namespace ilre::model {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t alignment = 32) : alignment_(alignment) {}

  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_f32s(const std::string& key, const std::vector<float>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);

  // shape is ggml order: shape[0] is the row length. data must hold exactly the tensor's byte size.
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                  std::span<const uint8_t> data);
  void add_f32_tensor(const std::string& name, const std::vector<int64_t>& shape, std::span<const float> data);

  std::vector<uint8_t> to_bytes() const;
  // Writes atomically (temporary file + rename); throws Exception(io_failed) on failure.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  std::vector<uint8_t> kv_;  // encoded key-value pairs
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
  uint32_t alignment_;
};

}  // namespace ilre::model
