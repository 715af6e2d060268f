#include "api/random_id.h"

#include <random>

namespace ilre::api {

std::string random_hex(size_t digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::string s;
  s.reserve(digits);
  for (size_t i = 0; i < digits; ++i) s += kHex[rd() & 15];
  return s;
}

}  // namespace ilre::api
