// Command-line helpers the benchmark programs share (they take --key=value flags, no CLI11 needed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ilre::bench {

// "256,512,1024" -> {256, 512, 1024}
inline std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t comma = s.find(',', pos);
    out.push_back(std::stoll(s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace ilre::bench
