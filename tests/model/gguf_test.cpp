#include "model/gguf/gguf.h"

#include <gtest/gtest.h>

#include "ilre/error.h"
#include "model/gguf/gguf_writer.h"
#include "support/paths.h"

namespace ilre::model {
namespace {

TEST(Gguf, ReadsStories260K) {
  auto f = GgufFile::open(test::data_model("stories260K-f32.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->require_string("general.architecture"), "llama");
  EXPECT_EQ(f->require_int("llama.block_count"), 5);
  const GgufTensor& emb = f->tensor("token_embd.weight");
  EXPECT_EQ(emb.type, GgmlType::F32);
  EXPECT_EQ(emb.ne[0], 64);
  EXPECT_EQ(emb.ne[1], 512);
}

}  // namespace
}  // namespace ilre::model
