// Tensor element types of the GGUF/ggml format: ids, block geometry, names.
//
// The numeric ids are fixed by the GGUF format (ggml.h); they are what a file stores, so they must never be
// renumbered. A "block" is the unit of quantisation: block_size elements stored in block_bytes bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ilre::model {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;
  int64_t block_size;   // elements per block
  int64_t block_bytes;  // bytes per block
  bool computable;      // ilre can dequantise it and multiply with it
};

// Geometry of a type id read from a file; nullopt for ids the format does not define.
std::optional<GgmlTypeInfo> ggml_type_info(uint32_t raw_type);
const GgmlTypeInfo& ggml_type_info(GgmlType type);

inline std::string_view ggml_type_name(GgmlType type) { return ggml_type_info(type).name; }

// Bytes of a row of n elements; nullopt if n is not a whole number of blocks.
std::optional<size_t> ggml_row_bytes(GgmlType type, int64_t n);

}  // namespace ilre::model
