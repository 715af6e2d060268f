// Results of `ilre eval`: a JSON file with every case and method (and the settings, model fingerprint and
// seed that made them), a Markdown summary (method x length), and SVG heatmaps (depth x length) per model
// and method, drawn by the program itself.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/run.h"

namespace ilre::eval {

// Means over the cases of one cell; skipped runs (full beyond the context) are counted, not averaged.
struct CellStats {
  int64_t n = 0;        // cases that ran
  int64_t skipped = 0;
  double accuracy = 0;  // mean RULER string-match score
  double exact = 0;     // share of exact matches
  double recall = 0;    // mean needle-token recall
  double ttft_ms = 0;   // mean final-pass TTFT
  double end_to_end_ms = 0;  // mean shared prefill + selection + TTFT
};

struct Summary {
  std::vector<std::string> methods;
  std::vector<int64_t> lengths;  // ascending
  std::vector<double> depths;    // as configured
  std::vector<std::string> tasks;
  std::vector<std::vector<CellStats>> by_length;                    // [method][length]
  std::vector<std::vector<std::vector<CellStats>>> by_depth_length;  // [method][depth][length]
  std::vector<std::vector<CellStats>> by_task;                      // [method][task]
  std::vector<CellStats> overall;                                   // [method]
};

Summary summarize(const ModelRun& run);

enum class HeatmapMetric { accuracy, recall };

// A self-contained SVG: rows = depths, columns = lengths, colour = the metric (0..1), value in each cell,
// axis titles and a colour legend; cells without a run are grey ("n/a").
std::string heatmap_svg(const Summary& s, size_t method, HeatmapMetric metric, const std::string& title);

// meta: free-form run information (config file, command line, start time) stored at the top of the JSON.
nlohmann::json results_json(const std::vector<ModelRun>& runs, const nlohmann::json& meta);
std::string markdown_report(const std::vector<ModelRun>& runs, const nlohmann::json& meta);

struct ReportFiles {
  std::string json;
  std::string markdown;
  std::vector<std::string> heatmaps;  // <dir>/<model>/heatmap-<method>-{accuracy,recall}.svg
  std::vector<std::string> configs;   // <dir>/<model>/config.yaml: the resolved ilre Config
};

// Writes everything under dir (created if needed); files are replaced atomically.
ReportFiles write_report(const std::string& dir, const std::vector<ModelRun>& runs, const nlohmann::json& meta);

// Writes text to path through path.tmp and a rename, creating the directories; throws Exception(io_failed).
void write_atomic(const std::filesystem::path& path, const std::string& text);

// The whole file as bytes; throws Exception(io_failed) naming it.
std::string read_file(const std::filesystem::path& path);

// <dir>/<model name made file-safe>: where a model's heatmaps and configs go.
std::string model_dir(const std::string& dir, const std::string& model_name);

// "4K", "128K", "1M", or the plain count below 1024.
std::string length_label(int64_t tokens);

}  // namespace ilre::eval
