#include "model/tokenizer/chat_template.h"

#include <sstream>

#include "model/gguf/gguf.h"
#include "model/hparams.h"
#include "ilre/error.h"

namespace ilre::model {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

bool contains(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

// Gemma has no system role: the system text is merged into the first user turn, as llama.cpp does.
std::string format_gemma(const std::vector<ChatMessage>& messages, bool gen) {
  std::ostringstream ss;
  std::string system;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      system += trim(m.content);
      continue;
    }
    const std::string role = m.role == "assistant" ? "model" : m.role;
    ss << "<start_of_turn>" << role << "\n";
    if (!system.empty() && role != "model") {
      ss << system << "\n\n";
      system.clear();
    }
    ss << trim(m.content) << "<end_of_turn>\n";
  }
  if (gen) ss << "<start_of_turn>model\n";
  return ss.str();
}

std::string format_llama3(const std::vector<ChatMessage>& messages, bool gen) {
  std::ostringstream ss;
  for (const ChatMessage& m : messages) {
    ss << "<|start_header_id|>" << m.role << "<|end_header_id|>\n\n" << trim(m.content) << "<|eot_id|>";
  }
  if (gen) ss << "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return ss.str();
}

std::string format_llama2(const std::vector<ChatMessage>& messages, bool) {
  std::ostringstream ss;
  std::string system;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      system = "<<SYS>>\n" + trim(m.content) + "\n<</SYS>>\n\n";
    } else if (m.role == "user") {
      ss << "[INST] " << system << trim(m.content) << " [/INST]";
      system.clear();
    } else {
      ss << " " << trim(m.content) << " </s>";
    }
  }
  return ss.str();
}

std::string format_chatml(const std::vector<ChatMessage>& messages, bool gen) {
  std::ostringstream ss;
  for (const ChatMessage& m : messages) ss << "<|im_start|>" << m.role << "\n" << m.content << "<|im_end|>\n";
  if (gen) ss << "<|im_start|>assistant\n";
  return ss.str();
}

// llama.cpp's LLM_CHAT_TEMPLATE_PHI_3: every role, system included, as its own <|role|> block, untrimmed.
std::string format_phi3(const std::vector<ChatMessage>& messages, bool gen) {
  std::ostringstream ss;
  for (const ChatMessage& m : messages) ss << "<|" << m.role << "|>\n" << m.content << "<|end|>\n";
  if (gen) ss << "<|assistant|>\n";
  return ss.str();
}

}  // namespace

std::string ChatTemplate::apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  switch (format) {
    case ChatFormat::gemma: return format_gemma(messages, add_generation_prompt);
    case ChatFormat::llama3: return format_llama3(messages, add_generation_prompt);
    case ChatFormat::llama2: return format_llama2(messages, add_generation_prompt);
    case ChatFormat::chatml: return format_chatml(messages, add_generation_prompt);
    case ChatFormat::phi3: return format_phi3(messages, add_generation_prompt);
  }
  return format_chatml(messages, add_generation_prompt);
}

ChatTemplate chat_template_for(const GgufFile& file, const HParams& hp) {
  const std::optional<std::string> tmpl = file.get_string("tokenizer.chat_template");
  if (!tmpl) {
    // No template in the file (common for base-model conversions): use the architecture's native format.
    const ChatFormat native = hp.arch == Arch::gemma3 ? ChatFormat::gemma
                              : hp.arch == Arch::phi3 ? ChatFormat::phi3
                                                      : ChatFormat::chatml;
    return {native, false};
  }
  const std::string& t = *tmpl;
  if (contains(t, "<start_of_turn>")) return {ChatFormat::gemma, true};
  if (contains(t, "<|start_header_id|>") && contains(t, "<|end_header_id|>")) return {ChatFormat::llama3, true};
  if (contains(t, "<|im_start|>")) return {ChatFormat::chatml, true};
  if (contains(t, "[INST]")) return {ChatFormat::llama2, true};
  // After the others, as in llama.cpp's llm_chat_detect_template.
  if (contains(t, "<|assistant|>") && contains(t, "<|end|>")) return {ChatFormat::phi3, true};
  throw Exception(errc::unsupported,
                  "'" + file.path() + "': chat template not recognised (gemma, llama3, llama2, chatml, phi3 are)");
}

}  // namespace ilre::model
