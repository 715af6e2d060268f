// Phi-3's chat format: recognised from the GGUF's Jinja template by its markers and rendered as llama.cpp
// renders it. The expected strings are llama.cpp's own output (llama_chat_apply_template of
// llama-cpp-python 0.3.36 on kPhi3Template and the same messages).
#include "model/tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "ilre/error.h"
#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "model/hparams.h"

namespace ilre::model {
namespace {

// microsoft/Phi-3-mini-4k-instruct's template, as its GGUF conversions carry it.
constexpr const char* kPhi3Template =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

struct File {
  std::vector<uint8_t> bytes;
  std::shared_ptr<const GgufFile> gguf;
};

File file_with_template(const char* tmpl) {
  GgufWriter w;
  w.set_string("general.architecture", "phi3");
  if (tmpl != nullptr) w.set_string("tokenizer.chat_template", tmpl);
  File f;
  f.bytes = w.to_bytes();
  f.gguf = GgufFile::parse(f.bytes, "chat-template-test");
  return f;
}

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief. "}, {"user", " Who had a red ball?"}, {"assistant", "Lily."}, {"user", "Why?"}};

TEST(ChatTemplate, Phi3IsRecognisedAndRenderedAsLlamaCpp) {
  HParams hp;
  hp.arch = Arch::llama;  // the template decides, not the architecture
  const File f = file_with_template(kPhi3Template);
  const ChatTemplate t = chat_template_for(*f.gguf, hp);
  EXPECT_EQ(t.format, ChatFormat::phi3);
  EXPECT_TRUE(t.from_metadata);
  EXPECT_EQ(t.apply(kConversation),
            "<|system|>\nBe brief. <|end|>\n<|user|>\n Who had a red ball?<|end|>\n<|assistant|>\nLily.<|end|>\n"
            "<|user|>\nWhy?<|end|>\n<|assistant|>\n");
  EXPECT_EQ(t.apply(kConversation, /*add_generation_prompt=*/false),
            "<|system|>\nBe brief. <|end|>\n<|user|>\n Who had a red ball?<|end|>\n<|assistant|>\nLily.<|end|>\n"
            "<|user|>\nWhy?<|end|>\n");
}

TEST(ChatTemplate, Phi3IsTheDefaultOfAPhi3FileWithoutTemplate) {
  HParams hp;
  hp.arch = Arch::phi3;
  const File f = file_with_template(nullptr);
  const ChatTemplate t = chat_template_for(*f.gguf, hp);
  EXPECT_EQ(t.format, ChatFormat::phi3);
  EXPECT_FALSE(t.from_metadata);
  hp.arch = Arch::qwen2;
  EXPECT_EQ(chat_template_for(*f.gguf, hp).format, ChatFormat::chatml);
}

TEST(ChatTemplate, UnknownTemplateListsTheKnownOnes) {
  HParams hp;
  const File f = file_with_template("{{ messages }}");
  try {
    chat_template_for(*f.gguf, hp);
    FAIL() << "an unknown template was accepted";
  } catch (const Exception& e) {
    EXPECT_EQ(e.code(), errc::unsupported);
    EXPECT_NE(std::string(e.what()).find("chatml, phi3 are"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ilre::model
