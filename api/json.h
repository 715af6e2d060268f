// The JSON form of the library's reports, one definition for every face of ilre (the CLI's --json, the C
// API, the daemon, the batch jobs), so a field has one name wherever a user meets it.
#pragma once

#include <nlohmann/json.hpp>

#include "ilre/engine.h"

namespace ilre::api {

nlohmann::json to_json(const IngestReport& r);
nlohmann::json to_json(const Answer& a);
nlohmann::json to_json(const Store& s);
nlohmann::json spans_json(const std::vector<std::pair<int64_t, int64_t>>& spans);

// dump() that never throws on invalid UTF-8 (generated text may end inside a character): replaces it.
std::string dump(const nlohmann::json& j, int indent = -1);

}  // namespace ilre::api
