#include "api/json.h"

namespace ilre::api {

nlohmann::json spans_json(const std::vector<std::pair<int64_t, int64_t>>& spans) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [start, end] : spans) out.push_back({start, end});
  return out;
}

std::string dump(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json to_json(const IngestReport& r) {
  return {{"store_dir", r.store_dir},
          {"tokens_added", r.tokens_added},
          {"total_tokens", r.total_tokens},
          {"segments_added", r.segments_added},
          {"layer", r.layer},
          {"bytes_read", r.bytes_read},
          {"replaced_bytes", r.replaced_bytes},
          {"raw_key_bytes", r.raw_key_bytes},
          {"stored_key_bytes", r.stored_key_bytes},
          {"key_compression_ratio", r.key_compression_ratio},
          {"timings_ms", r.timings_ms},
          {"tokens_per_second", r.tokens_per_second},
          {"peak_rss_mb", r.peak_rss_mb}};
}

nlohmann::json to_json(const Answer& a) {
  return {{"text", a.text},
          {"spans", spans_json(a.spans)},
          {"context_tokens", a.context_tokens},
          {"recalled", a.recalled},
          {"compressed", a.compressed},
          {"prompt_tokens", a.prompt_tokens},
          {"generated_tokens", a.generated_tokens},
          {"layer", a.layer},
          {"finish_reason", a.finish_reason},
          {"dca", a.dca},
          {"timings_ms", a.timings_ms},
          {"peak_rss_mb", a.peak_rss_mb}};
}

nlohmann::json to_json(const Store& s) {
  return {{"dir", s.dir},
          {"model_name", s.model_name},
          {"model_fingerprint", s.model_fingerprint},
          {"layer", s.layer},
          {"tokens", s.tokens},
          {"segments", s.segments},
          {"stored_bytes", s.stored_bytes},
          {"bytes", s.bytes},
          {"resumable", s.resumable},
          {"open", s.open},
          {"pending_tokens", s.pending_tokens},
          {"created_at", s.created_at},
          {"updated_at", s.updated_at}};
}

}  // namespace ilre::api
