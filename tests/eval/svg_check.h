// A small XML well-formedness check for the SVG the report writes (no XML library in the build): one <svg>
// root, balanced tags, quoted attributes, escaped text. Returns "" when well formed, else what is wrong.
#pragma once

#include <cctype>
#include <string>
#include <vector>

namespace ilre::test {

inline bool entity_ok(const std::string& s, size_t amp) {
  for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) {
    if (s.compare(amp, std::char_traits<char>::length(e), e) == 0) return true;
  }
  return false;
}

inline std::string text_problem(const std::string& s, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) {
    if (s[i] == '&' && !entity_ok(s, i)) return "unescaped & at " + std::to_string(i);
    if (s[i] == '<') return "unescaped < at " + std::to_string(i);
  }
  return "";
}

inline std::string svg_problem(const std::string& s) {
  size_t i = 0;
  if (s.rfind("<?xml", 0) == 0) {
    i = s.find("?>");
    if (i == std::string::npos) return "unterminated XML declaration";
    i += 2;
  }
  std::vector<std::string> open;
  int roots = 0;
  for (;;) {
    const size_t lt = s.find('<', i);
    const std::string_view between(s.data() + i, (lt == std::string::npos ? s.size() : lt) - i);
    if (open.empty() && between.find_first_not_of(" \t\r\n") != std::string_view::npos) return "text outside the root";
    if (auto p = text_problem(s, i, lt == std::string::npos ? s.size() : lt); !p.empty()) return p;
    if (lt == std::string::npos) break;
    size_t j = lt + 1;
    const bool closing = s[j] == '/';
    if (closing) ++j;
    const size_t name_begin = j;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == ':' || s[j] == '-')) ++j;
    const std::string name = s.substr(name_begin, j - name_begin);
    if (name.empty()) return "tag without a name at " + std::to_string(lt);
    if (closing) {
      if (open.empty() || open.back() != name) return "</" + name + "> does not close the open tag";
      open.pop_back();
      if (s[j] != '>') return "malformed closing tag </" + name;
      i = j + 1;
      continue;
    }
    if (open.empty() && ++roots > 1) return "more than one root element";
    if (open.empty() && name != "svg") return "the root is <" + name + ">, not <svg>";
    for (;;) {  // attributes: name="value"
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size()) return "unterminated tag <" + name;
      if (s[j] == '>' || s.compare(j, 2, "/>") == 0) break;
      const size_t a = j;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '-' || s[j] == ':')) ++j;
      if (j == a || s[j] != '=' || s[j + 1] != '"') return "malformed attribute in <" + name + "> at " + std::to_string(a);
      const size_t q = s.find('"', j + 2);
      if (q == std::string::npos) return "unterminated attribute value in <" + name;
      if (auto p = text_problem(s, j + 2, q); !p.empty()) return p;
      j = q + 1;
    }
    if (s[j] == '>') {
      open.push_back(name);
      i = j + 1;
    } else {
      i = j + 2;
    }
  }
  if (!open.empty()) return "<" + open.back() + "> is never closed";
  if (roots != 1) return "no root element";
  return "";
}

}  // namespace ilre::test
