// The answer's first-line cut, fed piece by piece as the decoder produces them.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "stages/decode.h"

namespace ilre::stages {
namespace {

// Feeds pieces until the cut says stop; returns the text emitted.
std::string feed(const std::vector<std::string>& pieces, size_t* consumed = nullptr) {
  FirstLineCut cut;
  std::string out;
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::string p = pieces[i];
    const bool stop = cut.cut(p);
    out += p;
    if (stop) {
      if (consumed) *consumed = i + 1;
      return out;
    }
  }
  if (consumed) *consumed = pieces.size();
  return out;
}

TEST(FirstLineCut, StopsAtTheBreakAfterText) {
  size_t n = 0;
  EXPECT_EQ(feed({" Smoke", " pap", "rika.", "\n", "Question", ":"}, &n), " Smoke paprika.");
  EXPECT_EQ(n, 4u);
}

TEST(FirstLineCut, BreakInsideAPiece) {
  size_t n = 0;
  EXPECT_EQ(feed({" 58213.\nQuestion:", " more"}, &n), " 58213.");
  EXPECT_EQ(n, 1u);
}

TEST(FirstLineCut, LeadingBlankLinesAreKept) {
  size_t n = 0;
  EXPECT_EQ(feed({"\n", " \n", "Under the stone", "\n\n"}, &n), "\n \nUnder the stone");
  EXPECT_EQ(n, 4u);
}

TEST(FirstLineCut, NoBreakMeansNoCut) {
  size_t n = 0;
  EXPECT_EQ(feed({"a", " b", " c"}, &n), "a b c");
  EXPECT_EQ(n, 3u);
}

}  // namespace
}  // namespace ilre::stages
