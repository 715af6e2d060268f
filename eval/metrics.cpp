#include "eval/metrics.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace ilre::eval {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Words of a reply: runs of letters, digits and hyphens (so "58213." and "58213" agree, and
// "amber-river-482" stays one word); "and" joins list items and is not an answer.
std::set<std::string> words(std::string_view text) {
  std::set<std::string> out;
  std::string w;
  auto flush = [&] {
    if (!w.empty() && w != "and") out.insert(w);
    w.clear();
  };
  for (char c : lower(text)) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-') {
      w += c;
    } else {
      flush();
    }
  }
  flush();
  return out;
}

std::string_view first_line(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  const size_t end = text.find('\n', begin);
  return text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
}

}  // namespace

std::vector<int64_t> needle_hits(std::span<const int64_t> recalled, std::span<const TokenRange> ranges) {
  std::vector<int64_t> hits;
  for (const auto& [start, end] : ranges) {
    const auto lo = std::lower_bound(recalled.begin(), recalled.end(), start);
    const auto hi = std::lower_bound(recalled.begin(), recalled.end(), end);
    hits.push_back(static_cast<int64_t>(hi - lo));
  }
  return hits;
}

double needle_recall(std::span<const int64_t> recalled, std::span<const TokenRange> ranges) {
  int64_t total = 0, hit = 0;
  const std::vector<int64_t> hits = needle_hits(recalled, ranges);
  for (size_t i = 0; i < ranges.size(); ++i) {
    total += ranges[i].second - ranges[i].first;
    hit += hits[i];
  }
  return total > 0 ? static_cast<double>(hit) / static_cast<double>(total) : 1.0;
}

AnswerScore score_answer(std::string_view output, const std::vector<std::string>& answers) {
  AnswerScore s;
  if (answers.empty()) return s;
  const std::string text = lower(output);
  int found = 0;
  std::set<std::string> expected;
  for (const std::string& a : answers) {
    found += text.find(lower(a)) != std::string::npos;
    for (const std::string& w : words(a)) expected.insert(w);
  }
  s.contains = found == static_cast<int>(answers.size());
  s.score = static_cast<double>(found) / static_cast<double>(answers.size());
  s.exact = !expected.empty() && words(first_line(output)) == expected;
  return s;
}

}  // namespace ilre::eval
