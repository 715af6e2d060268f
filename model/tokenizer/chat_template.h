// Chat prompt formatting. The GGUF's tokenizer.chat_template (a Jinja template) is recognised by its
// markers, as llama.cpp does, and rendered by a small formatter per family; ilre does not run Jinja.
#pragma once

#include <string>
#include <vector>

namespace ilre::model {

class GgufFile;
struct HParams;

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatFormat { gemma, llama3, llama2, chatml, phi3 };

struct ChatTemplate {
  ChatFormat format = ChatFormat::chatml;
  bool from_metadata = false;  // false: the file had no template and the architecture's default is used

  // Renders the conversation; with add_generation_prompt the text ends where the model's reply starts.
  // The result contains special-token text: tokenize it with parse_special.
  std::string apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;
};

// Throws Exception(unsupported) for a template ilre does not recognise.
ChatTemplate chat_template_for(const GgufFile& file, const HParams& hp);

}  // namespace ilre::model
