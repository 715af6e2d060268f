#include "eval/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ilre/error.h"

namespace fs = std::filesystem;

namespace ilre::eval {
namespace {

// Running sums of one cell, turned into means by finish().
struct CellSums {
  CellStats s;
  void add(const MethodOutcome& m) {
    if (m.skipped) {
      ++s.skipped;
      return;
    }
    ++s.n;
    s.accuracy += m.score.score;
    s.exact += m.score.exact ? 1.0 : 0.0;
    s.recall += m.recall;
    s.ttft_ms += m.ttft_ms;
    s.end_to_end_ms += m.end_to_end_ms;
  }
  CellStats finish() const {
    CellStats out = s;
    if (out.n > 0) {
      const auto n = static_cast<double>(out.n);
      out.accuracy /= n;
      out.exact /= n;
      out.recall /= n;
      out.ttft_ms /= n;
      out.end_to_end_ms /= n;
    }
    return out;
  }
};

template <class T>
size_t index_of(const std::vector<T>& v, const T& x) {
  return static_cast<size_t>(std::find(v.begin(), v.end(), x) - v.begin());
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string percent(double x) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%.0f%%", 100.0 * x);
  return buf;
}

// Diverging red -> yellow -> green (ColorBrewer RdYlGn end points) for 0 -> 0.5 -> 1.
std::string colour(double v) {
  v = std::clamp(v, 0.0, 1.0);
  const double lo[3] = {215, 48, 39}, mid[3] = {254, 224, 139}, hi[3] = {26, 152, 80};
  const double* a = v < 0.5 ? lo : mid;
  const double* b = v < 0.5 ? mid : hi;
  const double t = v < 0.5 ? v / 0.5 : (v - 0.5) / 0.5;
  char buf[8];
  std::snprintf(buf, sizeof(buf), "#%02x%02x%02x", static_cast<int>(std::lround(a[0] + t * (b[0] - a[0]))),
                static_cast<int>(std::lround(a[1] + t * (b[1] - a[1]))), static_cast<int>(std::lround(a[2] + t * (b[2] - a[2]))));
  return buf;
}

std::string file_safe(const std::string& name) {
  std::string out;
  for (char c : name) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c : '_';
  return out.empty() ? "model" : out;
}

nlohmann::json stats_json(const CellStats& c) {
  return {{"n", c.n}, {"skipped", c.skipped}, {"accuracy", c.accuracy}, {"exact", c.exact}, {"recall", c.recall},
          {"ttft_ms", c.ttft_ms}, {"end_to_end_ms", c.end_to_end_ms}};
}

nlohmann::json method_json(const MethodOutcome& m) {
  if (m.skipped) return {{"status", "skipped"}, {"reason", m.skip_reason}};
  nlohmann::json j = {{"status", "ok"},
                      {"recalled", m.recalled},
                      {"recall", m.recall},
                      {"needle_hits", m.needle_hits},
                      {"answer", m.answer},
                      {"exact", m.score.exact},
                      {"contains", m.score.contains},
                      {"score", m.score.score},
                      {"prompt_tokens", m.prompt_tokens},
                      {"generated", m.generated},
                      {"select_ms", m.select_ms},
                      {"ttft_ms", m.ttft_ms},
                      {"end_to_end_ms", m.end_to_end_ms},
                      {"answer_ms", m.answer_ms},
                      {"peak_rss_mb", m.peak_rss_mb},
                      {"dca", m.dca}};
  if (!m.spans.empty()) j["spans"] = m.spans;
  return j;
}

nlohmann::json case_json(const CaseOutcome& c) {
  nlohmann::json methods = nlohmann::json::object();
  for (const MethodOutcome& m : c.methods) methods[m.method] = method_json(m);
  return {{"id", c.id},
          {"task", task_name(c.spec.task)},
          {"haystack", filler_name(c.spec.haystack)},
          {"length", c.spec.length},
          {"depth", c.spec.depth},
          {"sample", c.spec.sample},
          {"n_tokens", c.n_tokens},
          {"n_query", c.n_query},
          {"budget", c.budget},
          {"budget_clamped", c.budget_clamped},
          {"question", c.question},
          {"answers", c.answers},
          {"needles", c.required},
          {"distractors", c.distractors},
          {"prefill_ms", c.prefill_ms},
          {"methods", methods}};
}

nlohmann::json summary_json(const Summary& s) {
  nlohmann::json j = nlohmann::json::object();
  for (size_t m = 0; m < s.methods.size(); ++m) {
    nlohmann::json per_length = nlohmann::json::object(), per_task = nlohmann::json::object();
    for (size_t l = 0; l < s.lengths.size(); ++l) per_length[std::to_string(s.lengths[l])] = stats_json(s.by_length[m][l]);
    for (size_t t = 0; t < s.tasks.size(); ++t) per_task[s.tasks[t]] = stats_json(s.by_task[m][t]);
    j[s.methods[m]] = {{"all", stats_json(s.overall[m])}, {"by_length", per_length}, {"by_task", per_task}};
  }
  return j;
}

nlohmann::json run_json(const ModelRun& r) {
  nlohmann::json cases = nlohmann::json::array();
  for (const CaseOutcome& c : r.cases) cases.push_back(case_json(c));
  return {{"name", r.name},
          {"path", r.path},
          {"fingerprint", r.fingerprint},
          {"architecture", r.summary},
          {"n_ctx_train", r.n_ctx_train},
          {"layer", r.layer},
          {"sink", r.sink},
          {"seed", r.settings.seed},
          {"seconds", r.seconds},
          {"settings", r.settings.to_json()},
          {"method_settings", r.method_settings},
          {"ilre_config", r.config_yaml},
          {"summary", summary_json(summarize(r))},
          {"cases", cases}};
}

// One Markdown table: rows = methods, columns = the labels, cells from cell(method, column).
template <class Cell>
std::string table(const Summary& s, const std::vector<std::string>& columns, Cell cell) {
  std::ostringstream t;
  t << "| method |";
  for (const std::string& c : columns) t << " " << c << " |";
  t << "\n|---|";
  for (size_t i = 0; i < columns.size(); ++i) t << "---|";
  t << "\n";
  for (size_t m = 0; m < s.methods.size(); ++m) {
    t << "| " << s.methods[m] << " |";
    for (size_t c = 0; c < columns.size(); ++c) t << " " << cell(m, c) << " |";
    t << "\n";
  }
  return t.str();
}

std::string acc_recall(const CellStats& c) {
  if (c.n == 0) return c.skipped > 0 ? "skipped" : "–";
  return percent(c.accuracy) + " / " + percent(c.recall);
}

std::string ms_text(const CellStats& c) {
  if (c.n == 0) return c.skipped > 0 ? "skipped" : "–";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f", c.end_to_end_ms);
  return buf;
}

// The process's high-water mark over the run (getrusage is per process, so per-method values only grow).
double peak_rss(const ModelRun& r) {
  double peak = 0;
  for (const CaseOutcome& c : r.cases) {
    for (const MethodOutcome& m : c.methods) peak = std::max(peak, m.peak_rss_mb);
  }
  return peak;
}

std::string model_section(const ModelRun& r) {
  const Summary s = summarize(r);
  std::vector<std::string> length_cols;
  for (int64_t n : s.lengths) length_cols.push_back(length_label(n));
  length_cols.push_back("all");
  const auto by_len = [&s](size_t m, size_t c) -> const CellStats& {
    return c < s.lengths.size() ? s.by_length[m][c] : s.overall[m];
  };
  std::ostringstream md;
  md << "## " << r.name << "\n\n"
     << "`" << r.path << "` — " << r.summary << ", fingerprint `" << r.fingerprint << "`, l_R = " << r.layer
     << ", sink " << r.sink << ", budget " << r.settings.budget.describe() << " tokens, seed " << r.settings.seed << ", "
     << r.cases.size() << " cases in " << std::lround(r.seconds) << " s, peak RSS " << std::lround(peak_rss(r))
     << " MB.\n\n"
     << "Accuracy / needle-token recall (mean over cases; accuracy = RULER string match):\n\n"
     << table(s, length_cols, [&](size_t m, size_t c) { return acc_recall(by_len(m, c)); }) << "\n"
     << "Exact match:\n\n"
     << table(s, length_cols, [&](size_t m, size_t c) {
          const CellStats& x = by_len(m, c);
          return x.n == 0 ? (x.skipped > 0 ? std::string("skipped") : std::string("–")) : percent(x.exact);
        })
     << "\n"
     << "Time to first token, end to end (ms: shared prefill to l_R + selection + final pass):\n\n"
     << table(s, length_cols, [&](size_t m, size_t c) { return ms_text(by_len(m, c)); }) << "\n"
     << "Accuracy / recall by task:\n\n"
     << table(s, s.tasks, [&](size_t m, size_t t) { return acc_recall(s.by_task[m][t]); }) << "\n"
     << "Heatmaps (depth x length): ";
  for (const std::string& m : s.methods) {
    md << "[" << m << "](" << file_safe(r.name) << "/heatmap-" << m << "-accuracy.svg) ";
  }
  md << "\n\n";
  return md.str();
}

}  // namespace

void write_atomic(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    out << text;
    out.flush();
    if (!out) throw Exception(errc::io_failed, "cannot write '" + tmp.string() + "'");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw Exception(errc::io_failed, "cannot rename '" + tmp.string() + "': " + ec.message());
}


std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Exception(errc::io_failed, "cannot read '" + path.string() + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string model_dir(const std::string& dir, const std::string& model_name) {
  return (fs::path(dir) / file_safe(model_name)).string();
}

std::string length_label(int64_t tokens) {
  if (tokens >= (1 << 20) && tokens % (1 << 20) == 0) return std::to_string(tokens >> 20) + "M";
  if (tokens >= 1024 && tokens % 1024 == 0) return std::to_string(tokens >> 10) + "K";
  return std::to_string(tokens);
}

Summary summarize(const ModelRun& run) {
  Summary s;
  s.methods = run.settings.methods;
  s.lengths = run.settings.lengths;
  std::sort(s.lengths.begin(), s.lengths.end());
  s.depths = run.settings.depths;
  for (Task t : run.settings.tasks) s.tasks.emplace_back(task_name(t));
  const size_t nm = s.methods.size(), nl = s.lengths.size(), nd = s.depths.size(), nt = s.tasks.size();
  std::vector<std::vector<CellSums>> by_length(nm, std::vector<CellSums>(nl)), by_task(nm, std::vector<CellSums>(nt));
  std::vector<std::vector<std::vector<CellSums>>> by_dl(nm, std::vector<std::vector<CellSums>>(nd, std::vector<CellSums>(nl)));
  std::vector<CellSums> overall(nm);
  for (const CaseOutcome& c : run.cases) {
    const size_t l = index_of(s.lengths, c.spec.length);
    const size_t d = index_of(s.depths, c.spec.depth);
    const size_t t = index_of(s.tasks, std::string(task_name(c.spec.task)));
    for (const MethodOutcome& mo : c.methods) {
      const size_t m = index_of(s.methods, mo.method);
      if (m >= nm || l >= nl || d >= nd || t >= nt) continue;
      by_length[m][l].add(mo);
      by_dl[m][d][l].add(mo);
      by_task[m][t].add(mo);
      overall[m].add(mo);
    }
  }
  auto finish = [](const auto& row) {
    std::vector<CellStats> out;
    for (const CellSums& c : row) out.push_back(c.finish());
    return out;
  };
  for (size_t m = 0; m < nm; ++m) {
    s.by_length.push_back(finish(by_length[m]));
    s.by_task.push_back(finish(by_task[m]));
    s.overall.push_back(overall[m].finish());
    s.by_depth_length.emplace_back();
    for (size_t d = 0; d < nd; ++d) s.by_depth_length.back().push_back(finish(by_dl[m][d]));
  }
  return s;
}

std::string heatmap_svg(const Summary& s, size_t method, HeatmapMetric metric, const std::string& title) {
  const int cell_w = 64, cell_h = 26, left = 84, top = 58, legend_w = 110;
  const int nl = static_cast<int>(s.lengths.size()), nd = static_cast<int>(s.depths.size());
  // Wide enough for the subtitle even with one or two lengths.
  const int width = std::max(430, left + nl * cell_w + legend_w), height = top + nd * cell_h + 62;
  const char* metric_name = metric == HeatmapMetric::accuracy ? "accuracy" : "needle-token recall";
  std::ostringstream svg;
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 "
      << width << " " << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect x=\"0\" y=\"0\" width=\"" << width << "\" height=\"" << height << "\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">"
      << xml_escape(title) << "</text>\n"
      << "<text x=\"" << width / 2 << "\" y=\"40\" text-anchor=\"middle\" fill=\"#444\">" << metric_name
      << " by needle depth and context length</text>\n";
  for (int d = 0; d < nd; ++d) {
    const int y = top + d * cell_h;
    svg << "<text x=\"" << left - 8 << "\" y=\"" << y + cell_h / 2 + 4 << "\" text-anchor=\"end\">"
        << percent(s.depths[static_cast<size_t>(d)]) << "</text>\n";
    for (int l = 0; l < nl; ++l) {
      const CellStats& c = s.by_depth_length[method][static_cast<size_t>(d)][static_cast<size_t>(l)];
      const double v = metric == HeatmapMetric::accuracy ? c.accuracy : c.recall;
      const int x = left + l * cell_w;
      svg << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << cell_w << "\" height=\"" << cell_h << "\" fill=\""
          << (c.n > 0 ? colour(v) : "#cccccc") << "\" stroke=\"white\"/>\n"
          << "<text x=\"" << x + cell_w / 2 << "\" y=\"" << y + cell_h / 2 + 4 << "\" text-anchor=\"middle\">"
          << (c.n > 0 ? percent(v) : "n/a") << "</text>\n";
    }
  }
  const int axis_y = top + nd * cell_h;
  for (int l = 0; l < nl; ++l) {
    svg << "<text x=\"" << left + l * cell_w + cell_w / 2 << "\" y=\"" << axis_y + 16 << "\" text-anchor=\"middle\">"
        << length_label(s.lengths[static_cast<size_t>(l)]) << "</text>\n";
  }
  svg << "<text x=\"" << left + nl * cell_w / 2 << "\" y=\"" << axis_y + 38
      << "\" text-anchor=\"middle\">context length (tokens)</text>\n"
      << "<text x=\"18\" y=\"" << top + nd * cell_h / 2 << "\" text-anchor=\"middle\" transform=\"rotate(-90 18 "
      << top + nd * cell_h / 2 << ")\">needle depth</text>\n";
  // Legend: the colour scale from 100% (top) to 0% (bottom), and the grey of cells without a run.
  const int lx = left + nl * cell_w + 24, ly = top, lh = std::max(nd * cell_h, 80);
  svg << "<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"0\" x2=\"0\" y2=\"1\">"
      << "<stop offset=\"0\" stop-color=\"" << colour(1.0) << "\"/><stop offset=\"0.5\" stop-color=\"" << colour(0.5)
      << "\"/><stop offset=\"1\" stop-color=\"" << colour(0.0) << "\"/></linearGradient></defs>\n"
      << "<rect x=\"" << lx << "\" y=\"" << ly << "\" width=\"16\" height=\"" << lh
      << "\" fill=\"url(#scale)\" stroke=\"#888\"/>\n"
      << "<text x=\"" << lx + 22 << "\" y=\"" << ly + 10 << "\">100%</text>\n"
      << "<text x=\"" << lx + 22 << "\" y=\"" << ly + lh / 2 + 4 << "\">50%</text>\n"
      << "<text x=\"" << lx + 22 << "\" y=\"" << ly + lh << "\">0%</text>\n"
      << "<rect x=\"" << lx << "\" y=\"" << ly + lh + 10 << "\" width=\"16\" height=\"12\" fill=\"#cccccc\"/>\n"
      << "<text x=\"" << lx + 22 << "\" y=\"" << ly + lh + 20 << "\">n/a</text>\n"
      << "</svg>\n";
  return svg.str();
}

nlohmann::json results_json(const std::vector<ModelRun>& runs, const nlohmann::json& meta) {
  nlohmann::json models = nlohmann::json::array();
  for (const ModelRun& r : runs) models.push_back(run_json(r));
  return {{"format", "ilre-eval/1"}, {"meta", meta}, {"models", models}};
}

std::string markdown_report(const std::vector<ModelRun>& runs, const nlohmann::json& meta) {
  std::ostringstream md;
  md << "# ilre eval\n\n";
  if (meta.contains("config")) md << "Config `" << meta["config"].get<std::string>() << "`. ";
  md << "Every method selects from the same layer-l_R keys of one streaming prefill per case, under the same "
        "budget and sink, and the full model answers from the recalled tokens (original order; positions as "
        "decode.positions, contiguous by default) + the query with greedy decoding. `full` answers from the whole document where it fits the "
        "trained context. Recall = share of the needle tokens the question needs inside the recalled set.\n\n";
  for (const ModelRun& r : runs) md << model_section(r);
  return md.str();
}

ReportFiles write_report(const std::string& dir, const std::vector<ModelRun>& runs, const nlohmann::json& meta) {
  ReportFiles files;
  const fs::path root(dir);
  files.json = (root / "results.json").string();
  write_atomic(files.json, results_json(runs, meta).dump(1) + "\n");
  files.markdown = (root / "report.md").string();
  write_atomic(files.markdown, markdown_report(runs, meta));
  for (const ModelRun& r : runs) {
    const fs::path sub = model_dir(dir, r.name);
    files.configs.push_back((sub / "config.yaml").string());
    write_atomic(files.configs.back(), r.config_yaml);
    const Summary s = summarize(r);
    for (size_t m = 0; m < s.methods.size(); ++m) {
      for (HeatmapMetric metric : {HeatmapMetric::accuracy, HeatmapMetric::recall}) {
        const std::string kind = metric == HeatmapMetric::accuracy ? "accuracy" : "recall";
        files.heatmaps.push_back((sub / ("heatmap-" + s.methods[m] + "-" + kind + ".svg")).string());
        write_atomic(files.heatmaps.back(), heatmap_svg(s, m, metric, r.name + " — " + s.methods[m]));
      }
    }
  }
  return files;
}

}  // namespace ilre::eval
