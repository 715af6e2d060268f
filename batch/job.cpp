#include "batch/job.h"

#include <glob.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

namespace fs = std::filesystem;

namespace ilre::batch {
namespace {

[[noreturn]] void bad(const std::string& file, const std::string& message) {
  throw Exception(errc::bad_json, file + ": " + message);
}

std::string resolve(const fs::path& base, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (base / p).lexically_normal().string();
}

std::string scalar(const YAML::Node& n, const std::string& file, const std::string& key) {
  if (!n.IsScalar()) bad(file, "'" + key + "' must be a string");
  return n.as<std::string>();
}

std::vector<std::string> string_list(const YAML::Node& n, const std::string& file, const std::string& key) {
  std::vector<std::string> out;
  if (!n || n.IsNull()) return out;
  if (!n.IsSequence()) bad(file, "'" + key + "' must be a list of strings");
  for (size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar()) bad(file, key + "[" + std::to_string(i) + "] must be a string");
    out.push_back(n[i].as<std::string>());
  }
  return out;
}

void check_keys(const YAML::Node& n, const std::set<std::string>& allowed, const std::string& file, const std::string& where) {
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      bad(file, "unknown key '" + k + "' in " + where + " (known: " + list + ")");
    }
  }
}

// A document that cannot run: it stays in the job so its questions get error lines naming the input.
DocumentSpec failed_document(std::string id, std::string origin, std::string error) {
  DocumentSpec d;
  d.id = std::move(id);
  d.origin = std::move(origin);
  d.error = std::move(error);
  return d;
}

// The id of a document named by its file: the file name (without folders).
std::string id_of_path(const std::string& path) { return fs::path(path).filename().string(); }

void add_jsonl(JobSpec& job, const std::string& path, const std::string& label) {
  std::ifstream in(path);
  if (!in) {
    job.documents.push_back(failed_document(label, label, "cannot read the JSONL file '" + path + "'"));
    return;
  }
  const fs::path base = fs::path(path).parent_path();
  std::string line;
  for (int64_t no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string origin = label + ":" + std::to_string(no);
    DocumentSpec d;
    d.origin = origin;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      d.id = origin;
      d.error = origin + ": not a JSON object";
      job.documents.push_back(std::move(d));
      continue;
    }
    const auto text = j.find("text");
    const auto p = j.find("path");
    if (p != j.end() && p->is_string()) d.path = resolve(base, p->get<std::string>());
    if (text != j.end() && text->is_string()) d.text = text->get<std::string>();
    if (j.contains("id") && j["id"].is_string()) d.id = j["id"].get<std::string>();
    else if (!d.path.empty()) d.id = id_of_path(d.path);
    if (d.id.empty()) d.id = origin;
    if (d.path.empty() == !d.text.has_value()) d.error = origin + ": needs exactly one of \"path\" and \"text\" (strings)";
    if (const auto q = j.find("questions"); q != j.end()) {
      if (!q->is_array()) d.error = origin + ": \"questions\" must be a list of strings";
      for (const auto& x : *q) {
        if (x.is_string()) d.questions.push_back(x.get<std::string>());
        else d.error = origin + ": \"questions\" must be a list of strings";
      }
    }
    job.documents.push_back(std::move(d));
  }
}

void add_glob(JobSpec& job, const fs::path& base, const std::string& pattern) {
  const std::string full = resolve(base, pattern);
  glob_t g{};
  const int r = ::glob(full.c_str(), 0, nullptr, &g);
  std::vector<std::string> files;
  if (r == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    job.documents.push_back(failed_document("glob:" + pattern, "glob " + pattern, "glob '" + pattern + "' matches no file"));
  }
  for (const std::string& f : files) {
    DocumentSpec d;
    d.id = id_of_path(f);
    d.path = f;
    d.origin = "glob " + pattern;
    job.documents.push_back(std::move(d));
  }
}

JobSpec parse(const std::string& path, const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw Exception(errc::io_failed, "cannot read the job file '" + path + "'");
  } catch (const YAML::Exception& e) {
    bad(path, e.what());
  }
  if (!root.IsMap()) bad(path, "a job file is a YAML mapping (see configs/jobs/reference.yaml)");
  check_keys(root, {"model", "settings", "documents", "questions", "output", "stores", "concurrency", "on_error"}, path, "the job");
  JobSpec job;
  job.file = path;
  const fs::path base = fs::absolute(path).parent_path();
  if (root["settings"]) {
    if (!root["settings"].IsMap()) bad(path, "'settings' must be a mapping of reference.yaml keys, e.g. {recall.budget: 2048}");
    for (const auto& kv : root["settings"]) {
      if (!kv.second.IsScalar() && !kv.second.IsSequence()) bad(path, "setting '" + kv.first.as<std::string>() + "' must be a value");
      std::string value;
      if (kv.second.IsSequence()) {
        for (size_t i = 0; i < kv.second.size(); ++i) value += (i ? "," : "") + kv.second[i].as<std::string>();
      } else {
        value = kv.second.as<std::string>();
      }
      job.settings.push_back(kv.first.as<std::string>() + "=" + value);
    }
  }
  for (const std::string& o : overrides) job.settings.push_back(o);
  if (root["model"]) job.config.model.path = scalar(root["model"], path, "model");
  for (const std::string& s : job.settings) {
    if (auto r = apply_override(job.config, s); !r) bad(path, r.error().message);
  }
  if (!job.config.model.path.empty() && fs::path(job.config.model.path).has_parent_path()) {
    job.config.model.path = resolve(base, job.config.model.path);
  }
  if (auto r = job.config.validate(); !r) bad(path, r.error().message);
  job.questions = string_list(root["questions"], path, "questions");
  if (!root["output"]) bad(path, "'output' is required (the JSONL file the answers go to)");
  job.output = resolve(base, scalar(root["output"], path, "output"));
  job.stores = root["stores"] ? resolve(base, scalar(root["stores"], path, "stores")) : job.output + ".stores";
  if (const YAML::Node c = root["concurrency"]; c) {
    const std::string v = scalar(c, path, "concurrency");
    if (v != "auto") {
      try {
        job.concurrency = std::stoi(v);
      } catch (const std::exception&) {
        bad(path, "'concurrency' must be auto or a number >= 1");
      }
      if (job.concurrency < 1 || job.concurrency > 256) bad(path, "'concurrency' must be auto or a number in [1, 256]");
    }
  }
  if (const YAML::Node e = root["on_error"]; e) {
    const std::string v = scalar(e, path, "on_error");
    if (v != "continue" && v != "stop") bad(path, "'on_error' must be continue or stop");
    job.stop_on_error = v == "stop";
  }
  const YAML::Node docs = root["documents"];
  if (!docs || !docs.IsSequence() || docs.size() == 0) bad(path, "'documents' must be a non-empty list");
  for (size_t i = 0; i < docs.size(); ++i) {
    const YAML::Node d = docs[i];
    const std::string where = "documents[" + std::to_string(i) + "]";
    if (!d.IsMap()) bad(path, where + " must be a mapping: {id, path} | {id, text} | {glob} | {jsonl}");
    check_keys(d, {"id", "path", "text", "glob", "jsonl", "questions"}, path, where);
    const int forms = (d["path"] ? 1 : 0) + (d["text"] ? 1 : 0) + (d["glob"] ? 1 : 0) + (d["jsonl"] ? 1 : 0);
    if (forms != 1) bad(path, where + " needs exactly one of path, text, glob, jsonl");
    if (d["glob"]) {
      add_glob(job, base, scalar(d["glob"], path, where + ".glob"));
    } else if (d["jsonl"]) {
      const std::string p = scalar(d["jsonl"], path, where + ".jsonl");
      add_jsonl(job, resolve(base, p), p);
    } else {
      DocumentSpec s;
      s.origin = where;
      if (d["path"]) s.path = resolve(base, scalar(d["path"], path, where + ".path"));
      if (d["text"]) s.text = scalar(d["text"], path, where + ".text");
      s.id = d["id"] ? scalar(d["id"], path, where + ".id") : (s.path.empty() ? "" : id_of_path(s.path));
      if (s.id.empty()) bad(path, where + " needs an id");
      s.questions = string_list(d["questions"], path, where + ".questions");
      job.documents.push_back(std::move(s));
    }
  }
  // Ids name stores and output lines: they must be unique and usable as a folder name.
  std::set<std::string> seen;
  for (DocumentSpec& d : job.documents) {
    const bool usable = !d.id.empty() && d.id.size() <= 200 && d.id.find('/') == std::string::npos && d.id[0] != '.';
    if (!usable && d.error.empty()) d.error = d.origin + ": document id '" + d.id + "' cannot name a store (no '/', no leading '.')";
    if (!seen.insert(d.id).second) bad(path, "two documents have the id '" + d.id + "' (" + d.origin + ")");
  }
  if (job.questions.empty() &&
      std::all_of(job.documents.begin(), job.documents.end(), [](const DocumentSpec& d) { return d.questions.empty() && d.error.empty(); })) {
    bad(path, "no questions: give 'questions', or questions per document");
  }
  return job;
}

}  // namespace

Result<JobSpec> load_job(const std::string& path, const std::vector<std::string>& overrides) {
  return catch_to_result([&] { return parse(path, overrides); });
}

std::vector<std::string> questions_for(const JobSpec& job, const DocumentSpec& doc) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto* list : {&job.questions, &doc.questions}) {
    for (const std::string& q : *list) {
      if (seen.insert(q).second) out.push_back(q);
    }
  }
  return out;
}

uint64_t stable_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

bool in_shard(const std::string& id, int32_t index, int32_t count) {
  return count <= 1 || static_cast<int32_t>(stable_hash(id) % static_cast<uint64_t>(count)) == index;
}

}  // namespace ilre::batch
