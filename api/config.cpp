#include "ilre/config.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <variant>

namespace ilre {
namespace {

using FieldRef = std::variant<int32_t*, int64_t*, uint64_t*, double*, float*, bool*, std::string*,
                              std::vector<int32_t>*, std::vector<double>*>;

struct Field {
  std::string path;  // "prefill.sink"
  FieldRef ref;
};

// The one table of keys: parsing, overrides, environment variables and YAML output all walk it, so a new
// knob is added in exactly one place.
std::vector<Field> fields(Config& c) {
  return {
      {"model.path", &c.model.path},
      {"model.threads", &c.model.threads},
      {"prefill.layer", &c.prefill.layer},
      {"prefill.sink", &c.prefill.sink},
      {"prefill.window", &c.prefill.window},
      {"prefill.chunk", &c.prefill.chunk},
      {"prefill.positions", &c.prefill.positions},
      {"scoring.softmax", &c.scoring.softmax},
      {"scoring.over_heads", &c.scoring.over_heads},
      {"scoring.over_queries", &c.scoring.over_queries},
      {"scoring.positions", &c.scoring.positions},
      {"scoring.query", &c.scoring.query},
      {"pooling.kernels", &c.pooling.kernels},
      {"pooling.shares", &c.pooling.shares},
      {"pooling.mode", &c.pooling.mode},
      {"recall.budget", &c.recall.budget},
      {"recall.keep_first", &c.recall.keep_first},
      {"recall.keep_last", &c.recall.keep_last},
      {"recall.policy", &c.recall.policy},
      {"recall.lexical_weight", &c.recall.lexical_weight},
      {"recall.lexical_window", &c.recall.lexical_window},
      {"query.template", &c.query.template_text},
      {"query.chat", &c.query.chat},
      {"query.span_separator", &c.query.span_separator},
      {"query.span_order", &c.query.span_order},
      {"decode.positions", &c.decode.positions},
      {"decode.max_tokens", &c.decode.max_tokens},
      {"decode.stop_at_newline", &c.decode.stop_at_newline},
      {"decode.temperature", &c.decode.temperature},
      {"decode.top_k", &c.decode.top_k},
      {"decode.top_p", &c.decode.top_p},
      {"decode.seed", &c.decode.seed},
      {"decode.numerics", &c.decode.numerics},
      {"decode.kv_type", &c.decode.kv_type},
      {"decode.dca", &c.decode.dca},
      {"decode.dca_context", &c.decode.dca_context},
      {"decode.context", &c.decode.context},
      {"store.key_dtype", &c.store.key_dtype},
      {"store.compression_level", &c.store.compression_level},
      {"store.segment_tokens", &c.store.segment_tokens},
      {"pipeline.queue_capacity", &c.pipeline.queue_capacity},
      {"pipeline.executor_threads", &c.pipeline.executor_threads},
      {"pipeline.read_chunk_bytes", &c.pipeline.read_chunk_bytes},
      {"pipeline.memory_budget_mb", &c.pipeline.memory_budget_mb},
  };
}

tl::unexpected<Error> bad(const std::string& origin, const std::string& what) {
  return make_error(errc::bad_json, origin + ": " + what);
}

// Assigns a YAML node to a field, converting with the field's type.
Result<void> assign(FieldRef ref, const YAML::Node& node, const std::string& path, const std::string& origin) {
  try {
    std::visit(
        [&](auto* p) {
          using T = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<T, std::vector<int32_t>> || std::is_same_v<T, std::vector<double>>) {
            if (!node.IsSequence()) throw YAML::Exception(node.Mark(), "expected a list");
          } else if (!node.IsScalar()) {
            throw YAML::Exception(node.Mark(), "expected a single value");
          }
          *p = node.as<T>();
        },
        ref);
  } catch (const YAML::Exception& e) {
    return bad(origin, "key '" + path + "': " + e.msg);
  }
  return {};
}

Result<void> walk(const YAML::Node& node, const std::string& prefix, std::vector<Field>& table,
                  const std::string& origin) {
  if (!node.IsMap()) return bad(origin, prefix.empty() ? "the top level must be a mapping" : "'" + prefix + "' must be a mapping");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    auto it = std::find_if(table.begin(), table.end(), [&](const Field& f) { return f.path == path; });
    if (it != table.end()) {
      if (auto r = assign(it->ref, kv.second, path, origin); !r) return r;
      continue;
    }
    const bool is_section = std::any_of(table.begin(), table.end(),
                                        [&](const Field& f) { return f.path.rfind(path + ".", 0) == 0; });
    if (!is_section) return bad(origin, "unknown key '" + path + "'");
    if (auto r = walk(kv.second, path, table, origin); !r) return r;
  }
  return {};
}

bool one_of(const std::string& v, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed) {
    if (v == a) return true;
  }
  return false;
}

tl::unexpected<Error> invalid(const std::string& what) { return make_error(errc::invalid_argument, what); }

std::string scalar_text(const FieldRef& ref) {
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        YAML::Emitter e;
        e.SetDoublePrecision(6);
        e.SetFloatPrecision(6);
        if constexpr (std::is_same_v<T, std::vector<int32_t>> || std::is_same_v<T, std::vector<double>>) {
          e << YAML::Flow << *p;
        } else if constexpr (std::is_same_v<T, std::string>) {
          e << YAML::DoubleQuoted << *p;
        } else {
          e << *p;
        }
        return e.c_str();
      },
      ref);
}

}  // namespace

Result<void> Config::validate() const {
  if (model.threads < 0) return invalid("model.threads must be >= 0");
  if (prefill.layer < -1) return invalid("prefill.layer must be >= 0 (or -1 for the calibrated layer)");
  if (prefill.sink < 0) return invalid("prefill.sink must be >= 0");
  if (prefill.window < 1) return invalid("prefill.window must be >= 1");
  if (prefill.chunk < 1 || prefill.chunk > 65536) return invalid("prefill.chunk must be in 1..65536");
  if (!one_of(prefill.positions, {"absolute", "cache"})) return invalid("prefill.positions must be absolute or cache");
  if (!one_of(scoring.over_heads, {"sum", "max"})) return invalid("scoring.over_heads must be sum or max");
  if (!one_of(scoring.over_queries, {"sum", "max"})) return invalid("scoring.over_queries must be sum or max");
  if (!one_of(scoring.positions, {"none", "absolute"})) return invalid("scoring.positions must be none or absolute");
  if (!one_of(scoring.query, {"all", "question"})) return invalid("scoring.query must be all or question");
  if (pooling.kernels.empty()) return invalid("pooling.kernels must not be empty");
  if (pooling.kernels.size() != pooling.shares.size()) {
    return invalid("pooling.kernels and pooling.shares must have the same length");
  }
  double sum = 0.0;
  for (size_t i = 0; i < pooling.kernels.size(); ++i) {
    if (pooling.kernels[i] < 1 || pooling.kernels[i] % 2 == 0 || pooling.kernels[i] > 65535) {
      return invalid("pooling.kernels must be odd sizes in 1..65535");
    }
    if (!(pooling.shares[i] > 0.0)) return invalid("pooling.shares must be > 0");
    sum += pooling.shares[i];
  }
  if (std::fabs(sum - 1.0) > 1e-6) return invalid("pooling.shares must sum to 1 (they sum to " + std::to_string(sum) + ")");
  if (!one_of(pooling.mode, {"pooled_topk", "expand_center"})) return invalid("pooling.mode must be pooled_topk or expand_center");
  if (recall.budget < -1 || recall.budget == 0) return invalid("recall.budget must be > 0 (or -1 for automatic)");
  if (recall.keep_first < -1 || recall.keep_last < 0) return invalid("recall.keep_first / keep_last must be >= 0");
  if (!one_of(recall.policy, {"attention", "hybrid"})) return invalid("recall.policy must be attention or hybrid");
  if (!std::isfinite(recall.lexical_weight) || recall.lexical_weight < 0 || recall.lexical_weight > 50) {
    return invalid("recall.lexical_weight must be in 0..50");
  }
  if (recall.lexical_window < 0 || recall.lexical_window > 4096) return invalid("recall.lexical_window must be in 0..4096");
  if (query.template_text.find("{question}") == std::string::npos) {
    return invalid("query.template must contain {question}");
  }
  if (!one_of(query.span_order, {"document", "relevance"})) return invalid("query.span_order must be document or relevance");
  if (!one_of(decode.positions, {"contiguous", "original"})) return invalid("decode.positions must be contiguous or original");
  if (decode.max_tokens < 0) return invalid("decode.max_tokens must be >= 0");
  if (!std::isfinite(decode.temperature) || decode.temperature < 0) return invalid("decode.temperature must be >= 0");
  if (!(decode.top_p > 0.0f && decode.top_p <= 1.0f)) return invalid("decode.top_p must be in (0, 1]");
  if (!one_of(decode.numerics, {"llama_cpp", "exact"})) return invalid("decode.numerics must be llama_cpp or exact");
  if (!one_of(decode.kv_type, {"f16", "f32"})) return invalid("decode.kv_type must be f16 or f32");
  if (!one_of(decode.dca, {"off", "auto", "on"})) return invalid("decode.dca must be off, auto or on");
  if (decode.dca_context != 0 && (decode.dca_context < 16 || decode.dca_context > (1 << 24))) {
    return invalid("decode.dca_context must be 0 (the model's) or in 16..16777216");
  }
  if (decode.context < 0 || decode.context > (1 << 24)) return invalid("decode.context must be in 0..16777216");
  if (!one_of(store.key_dtype, {"f16", "bf16"})) return invalid("store.key_dtype must be f16 or bf16");
  if (store.compression_level < 1 || store.compression_level > 19) return invalid("store.compression_level must be in 1..19");
  if (store.segment_tokens < 64) return invalid("store.segment_tokens must be >= 64");
  if (pipeline.queue_capacity < 1) return invalid("pipeline.queue_capacity must be >= 1");
  if (pipeline.executor_threads < 1) return invalid("pipeline.executor_threads must be >= 1");
  if (pipeline.read_chunk_bytes < 1) return invalid("pipeline.read_chunk_bytes must be >= 1");
  if (pipeline.memory_budget_mb < 16) return invalid("pipeline.memory_budget_mb must be >= 16");
  return {};
}

Result<Config> parse_config(const std::string& yaml_text, const std::string& origin) {
  Config cfg;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return bad(origin, e.what());
  }
  if (root.IsNull()) return cfg;  // an empty file: all defaults
  std::vector<Field> table = fields(cfg);
  if (auto r = walk(root, "", table, origin); !r) return tl::unexpected(r.error());
  if (auto r = cfg.validate(); !r) return make_error(r.error().code, origin + ": " + r.error().message);
  return cfg;
}

Result<Config> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(errc::io_failed, "cannot read config '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

Result<void> apply_override(Config& cfg, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) return invalid("override '" + assignment + "' is not key=value");
  const std::string path = assignment.substr(0, eq);
  const std::string value = assignment.substr(eq + 1);
  std::vector<Field> table = fields(cfg);
  auto it = std::find_if(table.begin(), table.end(), [&](const Field& f) { return f.path == path; });
  if (it == table.end()) return invalid("unknown setting '" + path + "'");
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    return invalid("setting '" + path + "': " + e.what());
  }
  if (node.IsNull()) node = YAML::Node(value);  // an empty string is a valid string value
  if (auto r = assign(it->ref, node, path, "override"); !r) return invalid(r.error().message);
  return {};
}

Result<void> apply_environment(Config& cfg) {
  std::vector<Field> table = fields(cfg);
  for (const Field& f : table) {
    std::string var = "ILRE_";
    for (char ch : f.path) var += ch == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (const char* v = std::getenv(var.c_str())) {
      if (auto r = apply_override(cfg, f.path + "=" + v); !r) {
        return make_error(r.error().code, "environment " + var + ": " + r.error().message);
      }
    }
  }
  return {};
}

std::string to_yaml(const Config& cfg_in) {
  Config cfg = cfg_in;
  std::ostringstream out;
  std::string section;
  for (const Field& f : fields(cfg)) {
    const std::string sec = f.path.substr(0, f.path.find('.'));
    if (sec != section) {
      out << sec << ":\n";
      section = sec;
    }
    out << "  " << f.path.substr(sec.size() + 1) << ": " << scalar_text(f.ref) << "\n";
  }
  return out.str();
}

}  // namespace ilre
