// Generated text as a client sees it: whole UTF-8 characters only, and nothing past a stop string.
// Tokens cut text anywhere (a character may span two tokens, a stop string three), so both hold back the
// few bytes that are still undecided and release them with the next piece.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ilre::api {

// Returns the longest prefix of the bytes fed so far that ends on a character boundary.
class Utf8Joiner {
 public:
  std::string feed(std::string_view bytes);
  // What is left at the end (an incomplete sequence is passed on as is; the caller's JSON writer replaces it).
  std::string flush();

 private:
  std::string pending_;
};

// Cuts the text before the first occurrence of any stop string, across pieces.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // The text that can be released now; once a stop string is complete, stopped() is true and nothing after
  // it is ever released.
  std::string feed(std::string_view text);
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace ilre::api
