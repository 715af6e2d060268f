#include "model/kernels/quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "ilre/error.h"
#include "model/gguf/ggml_type.h"
#include "model/gguf/gguf.h"
#include "model/kernels/quant_internal.h"
#include "support/paths.h"

#include "model/kernels/isa.h"

namespace ilre::model {
namespace {

// The F16C instructions themselves, the definition the portable conversions must meet bit for bit; called
// only where the CPU has them, whatever the build's baseline.
[[maybe_unused]] bool have_f16c() {
#if ILRE_AVX2_KERNELS
  return __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}
#if ILRE_AVX2_KERNELS
__attribute__((target("f16c"))) float f16c_to_float(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) uint16_t f16c_from_float(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
#endif

const std::vector<GgmlType>& computable_types() {
  static const std::vector<GgmlType> types = {
      GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
      GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
      GgmlType::IQ4_NL, GgmlType::IQ4_XS};
  return types;
}

GgmlType type_named(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    const auto info = ggml_type_info(id);
    if (info && info->name == name) return info->type;
  }
  ADD_FAILURE() << "unknown type " << name;
  return GgmlType::F32;
}

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

std::vector<float> floats_of(const nlohmann::json& j) {
  std::vector<float> out;
  out.reserve(j.size());
  for (const auto& v : j) out.push_back(static_cast<float>(v.get<double>()));
  return out;
}

const nlohmann::json& reference_json() {
  static const nlohmann::json doc = [] {
    std::ifstream in(test::data_dir() + "/gemma_dequant_rows.json");
    EXPECT_TRUE(in.good()) << "missing tests/data/gemma_dequant_rows.json (scripts/make_dequant_reference.py)";
    return in.good() ? nlohmann::json::parse(in) : nlohmann::json::object();
  }();
  return doc;
}

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

std::vector<uint8_t> quantize(GgmlType type, const std::vector<float>& x) {
  std::vector<uint8_t> q(*ggml_row_bytes(type, static_cast<int64_t>(x.size())));
  quantize_row_reference(type, x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

std::vector<float> dequantize(GgmlType type, const void* data, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row(type, data, y.data(), n);
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// Half and bfloat16 conversions

// An fp16 value by its definition, independent of the implementations under test.
double half_value(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

TEST(QuantFp16, ToFloatMatchesDefinitionAndF16cForAllHalves) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto hh = static_cast<uint16_t>(h);
    const float f = fp16_to_fp32(hh);
    const float portable = quant::fp16_to_fp32_portable(hh);
    ASSERT_EQ(float_bits(f), float_bits(portable)) << std::hex << h;
#if ILRE_AVX2_KERNELS
    if (have_f16c()) {
      ASSERT_EQ(float_bits(f), float_bits(f16c_to_float(hh))) << std::hex << h;
    }
#endif
    const int exp = (h >> 10) & 0x1f;
    if (exp == 0x1f) {
      ASSERT_TRUE((h & 0x3ff) ? std::isnan(f) : std::isinf(f)) << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(f), half_value(hh)) << std::hex << h;
    }
  }
}

TEST(QuantFp16, FromFloatRoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x7c00; ++h) {  // every finite non-negative half and the midpoint above it
    const float lo = fp16_to_fp32(static_cast<uint16_t>(h));
    const double hi = h + 1 < 0x7c00 ? half_value(static_cast<uint16_t>(h + 1)) : 65536.0;
    const auto mid = static_cast<float>((lo + hi) / 2);  // exact in float
    const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
    for (const int sign : {1, -1}) {
      const uint16_t s = sign < 0 ? 0x8000 : 0;
      ASSERT_EQ(fp32_to_fp16(sign * lo), s | h) << std::hex << h;
      ASSERT_EQ(quant::fp32_to_fp16_portable(sign * lo), s | h) << std::hex << h;
      ASSERT_EQ(fp32_to_fp16(sign * mid), s | even) << std::hex << h;
      ASSERT_EQ(quant::fp32_to_fp16_portable(sign * mid), s | even) << std::hex << h;
      ASSERT_EQ(fp32_to_fp16(std::nextafter(sign * mid, 0.0f)), s | h) << std::hex << h;
      ASSERT_EQ(quant::fp32_to_fp16_portable(std::nextafter(sign * mid, 0.0f)), s | h) << std::hex << h;
    }
  }
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-INFINITY), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(1e-10f), 0x0000);
  EXPECT_EQ(quant::fp32_to_fp16_portable(1e10f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(NAN) & 0x7e00, 0x7e00);
}

TEST(QuantFp16, PortableMatchesF16cOnRandomFloats) {
#if !ILRE_AVX2_KERNELS
  GTEST_SKIP() << "not an x86-64 build";
#else
  if (!have_f16c()) GTEST_SKIP() << "this CPU has no F16C";
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    const uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, sizeof f);
    ASSERT_EQ(quant::fp32_to_fp16_portable(f), f16c_from_float(f)) << std::hex << bits;
  }
#endif
}

TEST(QuantBf16, RoundsLikeGgml) {
  auto bits_to_float = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  };
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(bits_to_float(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(fp32_to_bf16(bits_to_float(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(fp32_to_bf16(bits_to_float(0x3f808001)), 0x3f81);
  EXPECT_EQ(fp32_to_bf16(-INFINITY), 0xff80);
  EXPECT_EQ(fp32_to_bf16(bits_to_float(0x7f800001)), 0x7fc0);  // signalling NaN comes back quiet
  EXPECT_EQ(bf16_to_fp32(0xc040), -3.0f);
}

// ---------------------------------------------------------------------------------------------------------
// Round trips through the reference quantiser

struct Bound {
  double rel;  // max |error| / max |x| over a block (super-block for K-quants)
};

Bound round_trip_bound(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return {0.0};
    case GgmlType::F16: return {1.0 / 2048};
    case GgmlType::BF16: return {1.0 / 256};
    case GgmlType::Q8_0: return {0.0045};
    case GgmlType::Q4_0: return {0.127};  // the value opposite to the max clamps from +8 to +7
    case GgmlType::Q5_0: return {0.0635};
    case GgmlType::Q4_1: return {0.068};
    case GgmlType::Q5_1: return {0.033};
    case GgmlType::Q6_K: return {0.035};
    case GgmlType::Q5_K: return {0.07};
    case GgmlType::Q4_K: return {0.14};
    case GgmlType::Q3_K: return {0.32};
    case GgmlType::Q2_K: return {0.55};
    case GgmlType::IQ4_NL: return {0.11};  // half the widest gap of the level table (24 of 113)
    case GgmlType::IQ4_XS: return {0.14};  // plus the six-bit sub-block scales
    default: return {0.0};
  }
}

// 1024 values in blocks with a given character.
std::vector<float> pattern(const std::string& kind, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(1024);
  for (float& v : x) v = normal(rng);
  if (kind == "zero") std::fill(x.begin(), x.end(), 0.0f);
  if (kind == "constant") std::fill(x.begin(), x.end(), 0.75f);
  if (kind == "negative") for (float& v : x) v = -std::fabs(v) - 0.1f;
  if (kind == "huge") for (float& v : x) v *= 1e4f;
  if (kind == "small") for (float& v : x) v *= 1e-2f;
  if (kind == "mixed") {
    // Blocks of very different scale inside one super-block, some zero, some constant.
    for (size_t i = 0; i < x.size(); ++i) {
      const size_t b = i / 32;
      if (b % 8 == 1) x[i] = 0.0f;
      if (b % 8 == 2) x[i] = -0.5f;
      if (b % 8 == 3) x[i] *= 100.0f;
      if (b % 8 == 5) x[i] = std::fabs(x[i]);
    }
  }
  return x;
}

class QuantRoundTrip : public ::testing::TestWithParam<GgmlType> {};

TEST_P(QuantRoundTrip, ErrorWithinTypeBound) {
  const GgmlType type = GetParam();
  const int64_t block = std::max<int64_t>(32, ggml_type_info(type).block_size);
  const double rel = round_trip_bound(type).rel;
  for (const std::string kind : {"gauss", "zero", "constant", "negative", "huge", "small", "mixed"}) {
    for (uint32_t seed = 1; seed <= (kind == "gauss" ? 4u : 1u); ++seed) {
      const std::vector<float> x = pattern(kind, seed);
      const std::vector<uint8_t> q = quantize(type, x);
      const std::vector<float> y = dequantize(type, q.data(), static_cast<int64_t>(x.size()));
      double worst = 0.0;
      for (size_t b = 0; b < x.size(); b += static_cast<size_t>(block)) {
        double amax = 0.0, err = 0.0;
        for (size_t i = b; i < b + static_cast<size_t>(block); ++i) {
          amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
          err = std::max(err, std::fabs(static_cast<double>(y[i]) - x[i]));
        }
        ASSERT_LE(err, rel * amax) << ggml_type_name(type) << " " << kind << " seed " << seed << " block " << b / block;
        if (amax > 0) worst = std::max(worst, err / amax);
      }
      if (kind == "zero") {
        for (float v : y) ASSERT_EQ(v, 0.0f) << ggml_type_name(type);
      }
      // A bound that is far too loose would hide a broken quantiser: real data must come close to it.
      if (kind == "gauss" && type != GgmlType::F32) {
        EXPECT_GT(worst, rel / 8) << ggml_type_name(type);
      }
    }
  }
}

TEST_P(QuantRoundTrip, TinyValuesStayFinite) {
  const GgmlType type = GetParam();
  std::vector<float> x = pattern("gauss", 3);
  for (float& v : x) v *= 1e-6f;
  const std::vector<uint8_t> q = quantize(type, x);
  const std::vector<float> y = dequantize(type, q.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_TRUE(std::isfinite(y[i])) << ggml_type_name(type) << " " << i;
    ASSERT_LE(std::fabs(y[i] - x[i]), 1e-5) << ggml_type_name(type) << " " << i;
  }
}

std::string type_param_name(const ::testing::TestParamInfo<GgmlType>& info) {
  return std::string(ggml_type_name(info.param));
}

INSTANTIATE_TEST_SUITE_P(Quant, QuantRoundTrip, ::testing::ValuesIn(computable_types()), type_param_name);

// ---------------------------------------------------------------------------------------------------------
// Dot products against a double-precision reference on dequantised operands

class QuantVecDot : public ::testing::TestWithParam<GgmlType> {};

TEST_P(QuantVecDot, MatchesDoubleReference) {
  const GgmlType type = GetParam();
  const GgmlType at = activation_type(type);
  for (const std::string kind : {"gauss", "mixed", "negative", "zero"}) {
    for (uint32_t seed = 11; seed < 14; ++seed) {
      const std::vector<float> w = pattern(kind, seed);
      const std::vector<float> x = pattern("gauss", seed + 100);
      const auto n = static_cast<int64_t>(w.size());
      const std::vector<uint8_t> wq = quantize(type, w);
      std::vector<uint8_t> aq(activation_row_bytes(type, n));
      quantize_activation_row(type, x.data(), aq.data(), n);
      const std::vector<float> wd = dequantize(type, wq.data(), n);
      const std::vector<float> ad = dequantize(at, aq.data(), n);
      double ref = 0.0, mag = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        ref += static_cast<double>(wd[i]) * ad[i];
        mag += std::fabs(static_cast<double>(wd[i]) * ad[i]);
      }
      double tol = 1e-5 * mag + 1e-30;
      if (at == GgmlType::Q8_1) {
        // The min term uses the activation's stored fp16 sum d*sum(q), not the sum of rounded values.
        const int64_t nb = n / 32;
        const auto* wb = reinterpret_cast<const uint16_t*>(wq.data());
        const size_t wstride = wq.size() / static_cast<size_t>(nb);
        double mins = 0.0;
        for (int64_t b = 0; b < nb; ++b) {
          const float m = fp16_to_fp32(wb[b * static_cast<int64_t>(wstride) / 2 + 1]);
          const auto* ab = reinterpret_cast<const quant::BlockQ8_1*>(aq.data()) + b;
          mins += std::fabs(static_cast<double>(m) * fp16_to_fp32(ab->s));
        }
        tol += mins / 1024;
      }
      const float got = vec_dot(type, n, wq.data(), aq.data());
      EXPECT_NEAR(got, ref, tol) << ggml_type_name(type) << " " << kind << " seed " << seed;
      if (kind == "zero") {
        EXPECT_EQ(got, 0.0f);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Quant, QuantVecDot, ::testing::ValuesIn(computable_types()), type_param_name);

// ---------------------------------------------------------------------------------------------------------
// Activation rounding

// llama.cpp's AVX2 quantize_row_q8_0, transcribed for one block: d = amax/127 kept as fp16, multiplier
// 127/amax, _mm256_round_ps to nearest even.
void q8_0_block_transcription(const float* x, uint16_t& d, int8_t* q) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  d = fp32_to_fp16(amax / 127.0f);
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float v = x[j] * id;
    float r = std::floor(v);
    const float frac = v - r;
    if (frac > 0.5f || (frac == 0.5f && std::fmod(r, 2.0f) != 0.0f)) r += 1.0f;
    q[j] = static_cast<int8_t>(r);
  }
}

TEST(QuantActivation, Q8_0RoundsHalfToEvenWithFp16Scale) {
  // amax 127 makes the multiplier exactly 1, so the .5 values are exact ties.
  std::vector<float> x = {127.0f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 3.5f, 126.5f, -126.5f, 0.49999997f,
                          -0.50000006f, 64.5f, 0.0f, -0.0f, 5.25f, 6.75f, -7.5f, 8.5f, 9.5f, 10.5f, -11.5f,
                          12.5f, 13.5f, 14.5f, 15.5f, 16.5f, 17.5f, 18.5f, 19.5f, 20.5f, 21.5f};
  // A second block with an awkward scale, a third all zero, a fourth where 127/amax is inexact.
  for (int j = 0; j < 32; ++j) x.push_back(0.013f * static_cast<float>(j - 16) + 0.0007f);
  for (int j = 0; j < 32; ++j) x.push_back(0.0f);
  for (int j = 0; j < 32; ++j) x.push_back(std::sin(static_cast<float>(j)) * 3.3f);
  ASSERT_EQ(x.size(), 128u);
  std::vector<uint8_t> got(activation_row_bytes(GgmlType::Q8_0, 128));
  ASSERT_EQ(got.size(), 4u * 34u);
  quantize_activation_row(GgmlType::Q5_0, x.data(), got.data(), 128);
  for (int b = 0; b < 4; ++b) {
    uint16_t d;
    int8_t q[32];
    q8_0_block_transcription(x.data() + 32 * b, d, q);
    const auto* blk = reinterpret_cast<const quant::BlockQ8_0*>(got.data()) + b;
    EXPECT_EQ(blk->d, d) << "block " << b;
    for (int j = 0; j < 32; ++j) EXPECT_EQ(blk->qs[j], q[j]) << "block " << b << " element " << j;
  }
  const auto* first = reinterpret_cast<const quant::BlockQ8_0*>(got.data());
  // Spot checks that do not depend on the transcription: ties go to the even neighbour.
  EXPECT_EQ(first->qs[1], 0);
  EXPECT_EQ(first->qs[2], 0);
  EXPECT_EQ(first->qs[3], 2);
  EXPECT_EQ(first->qs[4], -2);
  EXPECT_EQ(first->qs[5], 2);
  EXPECT_EQ(first->qs[6], -2);
  EXPECT_EQ(first->qs[7], 4);
  EXPECT_EQ(first->qs[8], 126);
  EXPECT_EQ(first->qs[9], -126);
  EXPECT_EQ(fp16_to_fp32(first->d), 1.0f);
}

TEST(QuantActivation, TypesAndSizes) {
  EXPECT_EQ(activation_type(GgmlType::F32), GgmlType::F32);
  EXPECT_EQ(activation_type(GgmlType::F16), GgmlType::F16);
  EXPECT_EQ(activation_type(GgmlType::BF16), GgmlType::BF16);
  EXPECT_EQ(activation_type(GgmlType::Q4_0), GgmlType::Q8_0);
  EXPECT_EQ(activation_type(GgmlType::Q5_0), GgmlType::Q8_0);
  EXPECT_EQ(activation_type(GgmlType::Q8_0), GgmlType::Q8_0);
  EXPECT_EQ(activation_type(GgmlType::Q4_1), GgmlType::Q8_1);
  EXPECT_EQ(activation_type(GgmlType::Q5_1), GgmlType::Q8_1);
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    EXPECT_EQ(activation_type(t), GgmlType::Q8_K);
  }
  EXPECT_EQ(activation_row_bytes(GgmlType::Q4_K, 512), 2u * 292u);
  EXPECT_EQ(activation_row_bytes(GgmlType::Q5_1, 64), 2u * 36u);
  EXPECT_EQ(activation_row_bytes(GgmlType::F16, 10), 20u);
}

TEST(QuantActivation, Q8_KMatchesGgmlReferenceRule) {
  std::vector<float> x(256);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& v : x) v = normal(rng);
  x[17] = -9.0f;  // the signed max is negative, so the scale is positive
  std::vector<uint8_t> got(activation_row_bytes(GgmlType::Q4_K, 256));
  quantize_activation_row(GgmlType::Q4_K, x.data(), got.data(), 256);
  const auto* b = reinterpret_cast<const quant::BlockQ8_K*>(got.data());
  EXPECT_FLOAT_EQ(b->d, 9.0f / 127.0f);
  EXPECT_EQ(b->qs[17], -127);
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += b->qs[16 * g + l];
    EXPECT_EQ(b->bsums[g], sum);
  }
  for (int j = 0; j < 256; ++j) EXPECT_NEAR(b->d * b->qs[j], x[j], b->d / 2 + 1e-6);
}

// ---------------------------------------------------------------------------------------------------------
// Agreement with ggml itself (reference data written by scripts/make_dequant_reference.py)

// Random blocks of each entry dequantised exactly as gguf-py did; returns how many entries were checked.
int check_layouts(const nlohmann::json& entries) {
  int checked = 0;
  for (const auto& entry : entries) {
    const GgmlType type = type_named(entry["type"]);
    const int64_t n = entry["n"];
    const std::vector<uint8_t> bytes = from_hex(entry["bytes"]);
    EXPECT_EQ(bytes.size(), *ggml_row_bytes(type, n));
    if (bytes.size() != *ggml_row_bytes(type, n)) continue;
    const std::vector<float> want = floats_of(entry["values"]);
    const std::vector<float> got = dequantize(type, bytes.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      if (got[i] != want[i]) {
        ADD_FAILURE() << entry["type"] << " element " << i << ": " << got[i] << " vs " << want[i];
        break;
      }
    }
    ++checked;
  }
  return checked;
}

TEST(QuantGgml, LayoutsMatchGgufPy) {
  const auto& doc = reference_json();
  ASSERT_TRUE(doc.contains("layouts"));
  EXPECT_EQ(check_layouts(doc["layouts"]), 12);
}

// A dot-product entry's activation row, quantised by ilre for its weight type, after checking that the type
// pairs with the activation format ggml used.
std::vector<uint8_t> activation_for(const nlohmann::json& entry, const std::vector<float>& x) {
  const GgmlType type = type_named(entry["weight_type"]);
  EXPECT_EQ(std::string(ggml_type_name(activation_type(type))), entry["activation_type"].get<std::string>());
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> act(activation_row_bytes(type, n));
  quantize_activation_row(type, x.data(), act.data(), n);
  return act;
}

// IQ4_NL / IQ4_XS: dequantisation of random blocks as gguf-py, and the dot product on the bytes ggml's own
// quantiser made (ilre's reference quantiser is a simpler rule, so those bytes are not compared).
TEST(QuantGgml, Iq4MatchesGgml) {
  const auto& doc = reference_json();
  ASSERT_TRUE(doc.contains("iq4"));
  const auto& iq = doc["iq4"];
  EXPECT_EQ(check_layouts(iq["layouts"]), 2);
  if (!iq.contains("dots")) GTEST_SKIP() << "reference data written without libggml";
  const std::vector<float> a = floats_of(iq["activation_input"]);
  const auto n = static_cast<int64_t>(a.size());
  for (const auto& entry : iq["dots"]) {
    const GgmlType type = type_named(entry["weight_type"]);
    const std::vector<uint8_t> act = activation_for(entry, a);
    const std::vector<uint8_t> w = from_hex(entry["weights"]);
    const float dot = vec_dot(type, n, w.data(), act.data());
    const float ggml_dot = entry["dot"].get<float>();
    EXPECT_NEAR(dot, ggml_dot, 2e-6 * std::fabs(ggml_dot)) << entry["weight_type"];
  }
}

TEST(QuantGgml, ReferenceQuantisationIsBitExact) {
  const auto& doc = reference_json();
  if (!doc.contains("reference")) GTEST_SKIP() << "reference data written without libggml";
  const std::vector<float> x = floats_of(doc["reference"]["input"]);
  int checked = 0;
  for (const auto& entry : doc["reference"]["results"]) {
    const GgmlType type = type_named(entry["type"]);
    const std::vector<uint8_t> want = from_hex(entry["bytes"]);
    const std::vector<uint8_t> got = quantize(type, x);
    ASSERT_EQ(got.size(), want.size());
    size_t first_diff = got.size();
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i] != want[i]) {
        first_diff = i;
        break;
      }
    }
    EXPECT_EQ(first_diff, got.size()) << entry["type"] << ": first differing byte";
    ++checked;
  }
  EXPECT_EQ(checked, 13);
}

TEST(QuantGgml, ActivationRoundingAndDotsMatchLlamaCpp) {
  const auto& doc = reference_json();
  if (!doc.contains("activation")) GTEST_SKIP() << "reference data written without libggml";
  const auto& act = doc["activation"];
  const std::vector<float> x = floats_of(act["input"]);
  const std::vector<float> w = floats_of(doc["reference"]["input"]);
  const auto n = static_cast<int64_t>(x.size());
  for (const auto& entry : act["dots"]) {
    const GgmlType type = type_named(entry["weight_type"]);
    const std::vector<uint8_t> got = activation_for(entry, x);
    const std::vector<uint8_t> want = from_hex(act["formats"][entry["activation_type"].get<std::string>()]);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_TRUE(got == want) << entry["weight_type"] << ": activation bytes differ from llama.cpp";
    const std::vector<uint8_t> wq = quantize(type, w);
    const float dot = vec_dot(type, n, wq.data(), got.data());
    const float ggml_dot = entry["dot"].get<float>();
    EXPECT_NEAR(dot, ggml_dot, 2e-6 * std::fabs(ggml_dot)) << entry["weight_type"];
  }
}

TEST(QuantGgml, GemmaRowsMatchGgufPy) {
  const auto model = test::gemma_model();
  if (!model) GTEST_SKIP() << "Gemma model not fetched";
  const auto& doc = reference_json();
  ASSERT_TRUE(doc.contains("gemma"));
  auto file = GgufFile::open(*model);
  int checked = 0;
  for (const auto& entry : doc["gemma"]) {
    const GgufTensor& t = file->tensor(entry["name"].get<std::string>());
    ASSERT_EQ(std::string(ggml_type_name(t.type)), entry["type"].get<std::string>());
    const int64_t n_in = entry["n_in"];
    ASSERT_EQ(t.ne[0], n_in);
    for (size_t r = 0; r < entry["rows"].size(); ++r) {
      const std::vector<float> want = floats_of(entry["rows"][r]);
      const std::vector<float> got = dequantize(t.type, t.data + r * t.row_bytes(), n_in);
      for (int64_t i = 0; i < n_in; ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-6 * std::fabs(want[i])) << entry["name"] << " row " << r << " col " << i;
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 5);
}

// ---------------------------------------------------------------------------------------------------------
// Errors

TEST(QuantErrors, UnsupportedTypesNameTheType) {
  float x[256] = {};
  uint8_t buf[1024] = {};
  auto expect_unsupported = [](auto&& fn) {
    try {
      fn();
      ADD_FAILURE() << "no exception";
    } catch (const Exception& e) {
      EXPECT_EQ(e.code(), errc::unsupported);
      EXPECT_NE(std::string(e.what()).find("iq2_xxs"), std::string::npos) << e.what();
    }
  };
  expect_unsupported([&] { dequantize_row(GgmlType::IQ2_XXS, buf, x, 256); });
  expect_unsupported([&] { (void)vec_dot(GgmlType::IQ2_XXS, 256, buf, buf); });
  expect_unsupported([&] { (void)activation_type(GgmlType::IQ2_XXS); });
  expect_unsupported([&] { quantize_row_reference(GgmlType::IQ2_XXS, x, buf, 256); });
  expect_unsupported([&] { quantize_activation_row(GgmlType::IQ2_XXS, x, buf, 256); });
  EXPECT_THROW(dequantize_row(GgmlType::Q4_K, buf, x, 100), Exception);
}

}  // namespace
}  // namespace ilre::model
