// OpenAI-compatible request handling over an ilre::Engine: the one implementation behind the daemon's
// /v1/chat/completions, /v1/completions and /v1/models, the batch jobs' OpenAI Batch lines, and any
// embedder that wants to answer OpenAI requests itself. Requests and responses are JSON text, so this
// header needs no JSON library.
//
//   ilre::openai::RequestContext ctx;              // where documents are, where long prompts go
//   ctx.scratch_dir = "/var/lib/ilre/tmp";
//   auto r = ilre::openai::chat_completions(*engine, body, ctx);  // r.status, r.body (OpenAI's shapes)
//
// The routing rule: a prompt that fits the model's context (with room for the answer) is answered
// directly by the whole model. A longer one is answered by ILRe: everything before the last user message
// is the context and the last user message is the question (one huge user message: its last paragraph is
// the question); the context is ingested into a temporary store under scratch_dir, asked, and removed.
// The extension field "ilre": {"document": "ID"} asks over a stored document instead. Every response
// carries an "ilre" object: the path taken, recalled spans, context tokens, l_R, timings.
//
// Thread-safety: the functions are reentrant; one Engine may serve any number of requests at once.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ilre/engine.h"
#include "ilre/error.h"
#include "ilre/export.h"

namespace ilre::openai {

struct Response {
  int status = 200;
  // OpenAI's JSON body. Empty when the request asked for a stream and it was delivered through on_event
  // (an error before the first event still comes back here, with its status).
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool streamed = false;
};

struct RequestContext {
  // "ilre": {"document": id} -> the store directory of that document; errc::not_found for an unknown id.
  // Unset: the extension is refused (400).
  std::function<Result<std::string>(const std::string& id)> document_store;
  // Where a long prompt's context is ingested for the time of the request (created if missing).
  std::string scratch_dir;
  CancelHandle cancel;
  // A request with "stream": true hands each server-sent event's data here, in order: JSON chunks, then
  // "[DONE]". Return false when the client went away: the work is cancelled. Unset: streams are refused.
  std::function<bool(std::string_view data)> on_event;
  ProgressFn on_progress;
};

ILRE_API Response chat_completions(Engine& engine, std::string_view request_body, const RequestContext& ctx);
ILRE_API Response completions(Engine& engine, std::string_view request_body, const RequestContext& ctx);
// GET /v1/models: the loaded model, with its context length and l_R.
ILRE_API Response models(const Engine& engine);

// OpenAI's error shape {"error": {"message", "type", "code"}} with the status an errc maps to.
ILRE_API Response error_response(const Error& error);
ILRE_API Response error_response(int status, std::string_view message, std::string_view type, std::string_view code = {});
// 400 invalid input, 404 not found, 409 model mismatch, 499 cancelled, 507 disk full, 500 everything else.
ILRE_API int http_status(errc code) noexcept;

}  // namespace ilre::openai
