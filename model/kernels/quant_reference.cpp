// Reference quantisation f32 -> weight formats: ggml's *_ref algorithms (ggml-quants.c), used to write
// quantised test models and by tools. Speed is irrelevant here; agreement with ggml is what matters.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "ilre/error.h"
#include "model/kernels/quant.h"
#include "model/kernels/quant_internal.h"

// ggml builds these routines without fused multiply-add; contracting a*b+c would change roundings.
#pragma GCC optimize("fp-contract=off")

namespace ilre::model {

using namespace quant;

namespace {

constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest (ties to even) through the float adder, exactly as ggml's nearest_int; defined for any
// input (large values give garbage, not undefined behaviour).
inline int nearest_int(float v) {
  const float biased = v + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &biased, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

// C's float -> integer conversion (truncation), made total: NaN and out-of-range inputs, which only
// degenerate blocks produce, give 0 instead of undefined behaviour.
inline int trunc_int(float v) {
  if (!(v > -1e9f && v < 1e9f)) return 0;
  return static_cast<int>(v);
}

// ----- legacy formats -----------------------------------------------------------------------------------

// Value of largest magnitude (first one wins a tie), sign kept.
float signed_absmax(const float* x, int n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void ref_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = std::min(15, trunc_int(x[j] * id + 8.5f));
      const int hi = std::min(15, trunc_int(x[j + kQK / 2] * id + 8.5f));
      y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

// ----- IQ4_NL / IQ4_XS --------------------------------------------------------------------------------
// A simpler rule than ggml's (which searches several scales per block): the value of largest magnitude maps
// to the table's end of its sign, every value to its nearest level. Used to make test and tool weights;
// dequantisation and dot products are what must match ggml, and do.

int nearest_iq4_level(float v) {
  int best = 0;
  float err = std::fabs(v - static_cast<float>(kIq4Values[0]));
  for (int k = 1; k < 16; ++k) {
    const float e = std::fabs(v - static_cast<float>(kIq4Values[k]));
    if (e < err) {
      err = e;
      best = k;
    }
  }
  return best;
}

// One 32-element group at scale d: nibbles in Q4_0's order.
void iq4_group(const float* x, float d, uint8_t* qs) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = nearest_iq4_level(x[j] * id);
    const int hi = nearest_iq4_level(x[j + kQK / 2] * id);
    qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

// A positive scale that puts the value of largest magnitude on the table's level of the same sign.
float iq4_scale(const float* x) {
  const float m = signed_absmax(x, kQK);
  return m / static_cast<float>(m < 0.0f ? kIq4Values[0] : kIq4Values[15]);
}

void ref_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = iq4_scale(x);
    y[i].d = float_to_half(d);
    iq4_group(x, half_to_float(y[i].d), y[i].qs);
  }
}

void ref_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t nb) {
  constexpr int kSub = kQKK / kQK;
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float sub[kSub];
    float amax = 0.0f;
    for (int ib = 0; ib < kSub; ++ib) {
      sub[ib] = iq4_scale(x + ib * kQK);
      amax = std::max(amax, std::fabs(sub[ib]));
    }
    // Six-bit scales biased by 32: ls - 32 in -32..31 multiplies d.
    const float d = amax / 31.0f;
    y[i].d = float_to_half(d);
    const float dd = half_to_float(y[i].d);
    y[i].scales_h = 0;
    std::memset(y[i].scales_l, 0, sizeof(y[i].scales_l));
    for (int ib = 0; ib < kSub; ++ib) {
      const int l = dd != 0.0f ? std::clamp(nearest_int(sub[ib] / dd), -32, 31) : 0;
      const int ls = l + 32;
      y[i].scales_l[ib / 2] = static_cast<uint8_t>(y[i].scales_l[ib / 2] | ((ls & 0xF) << (4 * (ib % 2))));
      y[i].scales_h = static_cast<uint16_t>(y[i].scales_h | ((ls >> 4) << (2 * ib)));
      iq4_group(x + ib * kQK, dd * static_cast<float>(l), y[i].qs + ib * (kQK / 2));
    }
  }
}

void min_max(const float* x, int n, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
}

void ref_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float min, max;
    min_max(x, kQK, min, max);
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    y[i].m = float_to_half(min);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = std::min(15, trunc_int((x[j] - min) * id + 0.5f));
      const int hi = std::min(15, trunc_int((x[j + kQK / 2] - min) * id + 0.5f));
      y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

// Packs 32 five-bit values into nibbles plus a 32-bit mask of fifth bits.
template <class Block>
void pack_q5(const int* q, Block& b) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    b.qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + kQK / 2] & 0xF) << 4));
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + kQK / 2] >> 4) & 1) << (j + kQK / 2);
  }
  std::memcpy(b.qh, &qh, sizeof qh);
}

void ref_q5_0(const float* x, BlockQ5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = std::min(31, trunc_int(x[j] * id + 16.5f));
    pack_q5(q, y[i]);
  }
}

void ref_q5_1(const float* x, BlockQ5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float min, max;
    min_max(x, kQK, min, max);
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    y[i].m = float_to_half(min);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = trunc_int((x[j] - min) * id + 0.5f) & 0xFF;
    pack_q5(q, y[i]);
  }
}

void ref_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(trunc_int(std::round(x[j] * id)));  // half away from 0
  }
}

// ----- K-quant helpers (make_qx_quants, make_q3_quants, make_qkx2_quants) --------------------------------

// Symmetric quants in [-nmax, nmax-1] with a scale fitted by weighted least squares (rmse_type 1:
// weights x^2), trying 18 nearby scales. L receives the quants offset by nmax.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  const float amax = std::fabs(max);
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, static_cast<int8_t>(0));
    return 0.0f;
  }
  float iscale = -static_cast<float>(nmax) / max;
  float sumlx = 0.0f;
  float suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * static_cast<float>(l);
      suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K's variant: start from the max-based scale, then greedily move single quants while the weighted
// error improves. L receives the quants offset by nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  const float amax = std::fabs(max);
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, static_cast<int8_t>(0));
    return 0.0f;
  }
  const float iscale = -static_cast<float>(nmax) / max;
  float sumlx = 0.0f;
  float suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * static_cast<float>(L[i]);
      if (slx > 0.0f) {
        float sl2 = suml2 - w * static_cast<float>(L[i]) * static_cast<float>(L[i]);
        const int new_l = std::max(-nmax, std::min(nmax - 1, nearest_int(x[i] * sl2 / slx)));
        if (new_l != L[i]) {
          slx += w * x[i] * static_cast<float>(new_l);
          sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
          if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric quants in [0, nmax] with a scale and a (non-positive) min, searched over nstep+1 candidate
// scales to minimise the weighted squared (or absolute, use_mad) error. Returns the scale; *the_min gets
// -min so that x ~ scale*L - the_min.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0.0f) min = 0.0f;
  if (max == min) {
    std::fill(L, L + n, static_cast<uint8_t>(0));
    *the_min = -min;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * static_cast<float>(l);
      sum_l2 += w * static_cast<float>(l) * static_cast<float>(l);
      sum_xl += w * static_cast<float>(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.0f) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0.0f;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Packs 256 two-bit values the way Q2_K and Q3_K store them: byte l of each 32-byte chunk holds elements
// l, l+32, l+64, l+96 of its 128-element half.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQKK; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                           (L[j + l + 96] << 6));
    }
  }
}

// ----- K-quants ------------------------------------------------------------------------------------------

void ref_q2_k(const float* x, BlockQ2_K* y, int64_t nb) {
  uint8_t L[kQKK];
  uint8_t Laux[16];
  float weights[16];
  float mins[kQKK / 16];
  float scales[kQKK / 16];
  const float q4scale = 15.0f;
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float max_scale = 0.0f;
    float max_min = 0.0f;
    for (int j = 0; j < kQKK / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    if (max_scale > 0.0f) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < kQKK / 16; ++j) y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      y[i].d = float_to_half(max_scale / q4scale);
    } else {
      std::fill(y[i].scales, y[i].scales + kQKK / 16, static_cast<uint8_t>(0));
      y[i].d = float_to_half(0.0f);
    }
    if (max_min > 0.0f) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < kQKK / 16; ++j) {
        y[i].scales[j] = static_cast<uint8_t>(y[i].scales[j] | (nearest_int(iscale * mins[j]) << 4));
      }
      y[i].dmin = float_to_half(max_min / q4scale);
    } else {
      y[i].dmin = float_to_half(0.0f);
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = half_to_float(y[i].d) * static_cast<float>(y[i].scales[j] & 0xF);
      if (d == 0.0f) continue;
      const float dm = half_to_float(y[i].dmin) * static_cast<float>(y[i].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int((x[16 * j + ii] + dm) / d);
        L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    pack_2bit(L, y[i].qs);
  }
}

void ref_q3_k(const float* x, BlockQ3_K* y, int64_t nb) {
  int8_t L[kQKK];
  float scales[kQKK / 16];
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float max_scale = 0.0f;
    float amax = 0.0f;
    for (int j = 0; j < kQKK / 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    if (max_scale != 0.0f) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < kQKK / 16; ++j) {
        int l = std::max(-32, std::min(31, static_cast<int>(static_cast<int8_t>(nearest_int(iscale * scales[j]))))) + 32;
        if (j < 8) y[i].scales[j] = static_cast<uint8_t>(l & 0xF);
        else y[i].scales[j - 8] = static_cast<uint8_t>(y[i].scales[j - 8] | ((l & 0xF) << 4));
        l >>= 4;
        y[i].scales[j % 4 + 8] = static_cast<uint8_t>(y[i].scales[j % 4 + 8] | (l << (2 * (j / 4))));
      }
      y[i].d = float_to_half(1.0f / iscale);
    } else {
      y[i].d = float_to_half(0.0f);
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = half_to_float(y[i].d) * static_cast<float>(q3k_scale(j, y[i].scales));
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = std::max(-4, std::min(3, nearest_int(x[16 * j + ii] / d)));
        L[16 * j + ii] = static_cast<int8_t>(l + 4);
      }
    }
    // The high bit of quant j goes to bit j/32 of hmask[j%32]; the low two bits are packed like Q2_K.
    std::memset(y[i].hmask, 0, sizeof y[i].hmask);
    uint8_t low[kQKK];
    for (int j = 0; j < kQKK; ++j) {
      int v = L[j];
      if (v > 3) {
        y[i].hmask[j % 32] = static_cast<uint8_t>(y[i].hmask[j % 32] | (1 << (j / 32)));
        v -= 4;
      }
      low[j] = static_cast<uint8_t>(v);
    }
    pack_2bit(low, y[i].qs);
  }
}

// Q4_K and Q5_K share everything but the quant width and search parameters.
struct K45Params {
  int nmax;
  float rmin;
  int nstep;
};

template <class Block>
void ref_k45_scales(const float* x, Block& y, uint8_t* L, const K45Params& p) {
  uint8_t Laux[32];
  float weights[32];
  float mins[kQKK / 32];
  float scales[kQKK / 32];
  float max_scale = 0.0f;
  float max_min = 0.0f;
  for (int j = 0; j < kQKK / 32; ++j) {
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32.0f);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, p.nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, p.rmin, 0.1f, p.nstep,
                                 false);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < kQKK / 32; ++j) {
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    if (j < 4) {
      y.scales[j] = ls;
      y.scales[j + 4] = lm;
    } else {
      y.scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      y.scales[j - 4] = static_cast<uint8_t>(y.scales[j - 4] | ((ls >> 4) << 6));
      y.scales[j] = static_cast<uint8_t>(y.scales[j] | ((lm >> 4) << 6));
    }
  }
  y.d = float_to_half(max_scale / 63.0f);
  y.dmin = float_to_half(max_min / 63.0f);
  for (int j = 0; j < kQKK / 32; ++j) {
    int sc, m;
    k4_scale_min(j, y.scales, sc, m);
    const float d = half_to_float(y.d) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = half_to_float(y.dmin) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(p.nmax, l)));
    }
  }
}

void ref_q4_k(const float* x, BlockQ4_K* y, int64_t nb) {
  uint8_t L[kQKK];
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    ref_k45_scales(x, y[i], L, K45Params{15, -1.0f, 20});
    uint8_t* q = y[i].qs;
    for (int j = 0; j < kQKK; j += 64, q += 32) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

void ref_q5_k(const float* x, BlockQ5_K* y, int64_t nb) {
  uint8_t L[kQKK];
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    ref_k45_scales(x, y[i], L, K45Params{31, -0.5f, 15});
    std::memset(y[i].qh, 0, sizeof y[i].qh);
    uint8_t* ql = y[i].qs;
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < kQKK; n += 64, ql += 32) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j];
        if (l1 > 15) {
          l1 -= 16;
          y[i].qh[j] |= m1;
        }
        int l2 = L[n + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          y[i].qh[j] |= m2;
        }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<uint8_t>(m1 << 2);
      m2 = static_cast<uint8_t>(m2 << 2);
    }
  }
}

void ref_q6_k(const float* x, BlockQ6_K* y, int64_t nb) {
  int8_t L[kQKK];
  float scales[kQKK / 16];
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float max_scale = 0.0f;
    float max_abs_scale = 0.0f;
    for (int ib = 0; ib < kQKK / 16; ++ib) {
      scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
      const float abs_scale = std::fabs(scales[ib]);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      continue;
    }
    const float iscale = -128.0f / max_scale;
    y[i].d = float_to_half(1.0f / iscale);
    for (int ib = 0; ib < kQKK / 16; ++ib) {
      y[i].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    }
    for (int j = 0; j < kQKK / 16; ++j) {
      const float d = half_to_float(y[i].d) * static_cast<float>(y[i].scales[j]);
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d)));
        L[16 * j + ii] = static_cast<int8_t>(l + 32);
      }
    }
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    for (int j = 0; j < kQKK; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const int q1 = L[j + l] & 0xF;
        const int q2 = L[j + l + 32] & 0xF;
        const int q3 = L[j + l + 64] & 0xF;
        const int q4 = L[j + l + 96] & 0xF;
        ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                     ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace

void quantize_row_reference(GgmlType type, const float* src, void* dst, int64_t n) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  if (!info.computable) {
    throw Exception(errc::unsupported,
                    "quantize: tensor type " + std::string(info.name) + " is not supported");
  }
  if (n < 0 || n % info.block_size != 0) {
    throw Exception(errc::invalid_argument, "quantize: " + std::to_string(n) + " elements is not a whole number of " +
                                                std::string(info.name) + " blocks");
  }
  const int64_t nb = n / info.block_size;
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = float_to_half(src[i]);
      return;
    }
    case GgmlType::BF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = float_to_bf16_bits(src[i]);
      return;
    }
    case GgmlType::Q4_0: return ref_q4_0(src, static_cast<BlockQ4_0*>(dst), nb);
    case GgmlType::Q4_1: return ref_q4_1(src, static_cast<BlockQ4_1*>(dst), nb);
    case GgmlType::Q5_0: return ref_q5_0(src, static_cast<BlockQ5_0*>(dst), nb);
    case GgmlType::Q5_1: return ref_q5_1(src, static_cast<BlockQ5_1*>(dst), nb);
    case GgmlType::Q8_0: return ref_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
    case GgmlType::Q2_K: return ref_q2_k(src, static_cast<BlockQ2_K*>(dst), nb);
    case GgmlType::Q3_K: return ref_q3_k(src, static_cast<BlockQ3_K*>(dst), nb);
    case GgmlType::Q4_K: return ref_q4_k(src, static_cast<BlockQ4_K*>(dst), nb);
    case GgmlType::Q5_K: return ref_q5_k(src, static_cast<BlockQ5_K*>(dst), nb);
    case GgmlType::Q6_K: return ref_q6_k(src, static_cast<BlockQ6_K*>(dst), nb);
    case GgmlType::IQ4_NL: return ref_iq4_nl(src, static_cast<BlockIQ4_NL*>(dst), nb);
    case GgmlType::IQ4_XS: return ref_iq4_xs(src, static_cast<BlockIQ4_XS*>(dst), nb);
    default:
      throw Exception(errc::unsupported, "quantize: tensor type " + std::string(info.name) + " is not supported");
  }
}

}  // namespace ilre::model
