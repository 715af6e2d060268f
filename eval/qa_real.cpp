#include "eval/qa_real.h"

#include <yaml-cpp/yaml.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "eval/final_pass.h"
#include "eval/layer_probe.h"
#include "eval/methods.h"
#include "eval/report.h"
#include "ilre/error.h"
#include "retrieval/configure.h"
#include "retrieval/lexical.h"
#include "retrieval/prompt.h"
#include "stages/recall.h"

namespace fs = std::filesystem;

namespace ilre::eval {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Debian compresses most of /usr/share/doc; the documents are read as they are installed.
std::string read_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw Exception(errc::io_failed, "cannot read '" + path + "'");
  std::string out;
  char buf[1 << 16];
  for (int n; (n = gzread(f, buf, sizeof(buf))) > 0;) out.append(buf, static_cast<size_t>(n));
  int err = 0;
  const char* msg = gzerror(f, &err);
  const std::string what = err != Z_OK && err != Z_STREAM_END ? std::string(msg) : "";
  gzclose(f);
  if (!what.empty()) throw Exception(errc::io_failed, "'" + path + "' is not a valid gzip file: " + what);
  return out;
}

std::string read_document(const std::string& path) {
  return path.size() > 3 && path.ends_with(".gz") ? read_gzip(path) : read_file(path);
}

// Text with every whitespace run as one space, and the byte in `text` each output byte came from.
std::string collapse(const std::string& text, std::vector<size_t>* origin) {
  std::string out;
  out.reserve(text.size());
  bool in_space = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (is_space(c)) {
      if (in_space) continue;
      in_space = true;
      out += ' ';
    } else {
      in_space = false;
      out += static_cast<char>(c);
    }
    if (origin) origin->push_back(i);
  }
  return out;
}

std::string trimmed(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s.substr(std::min(s.size(), s.find_first_not_of(' ')));
}

template <class T>
T field(const YAML::Node& n, const std::string& key, const std::string& where) {
  if (!n[key]) throw Exception(errc::invalid_argument, where + ": '" + key + "' is required");
  try {
    return n[key].as<T>();
  } catch (const YAML::Exception& e) {
    throw Exception(errc::invalid_argument, where + "." + key + ": " + e.msg);
  }
}

QaQuestion parse_question(const YAML::Node& n, const std::string& where) {
  if (!n.IsMap()) throw Exception(errc::invalid_argument, where + ": expected a mapping");
  static const std::set<std::string> known{"id", "question", "answer", "aliases", "evidence", "heldout"};
  for (const auto& kv : n) {
    if (!known.contains(kv.first.as<std::string>())) {
      throw Exception(errc::invalid_argument, where + "." + kv.first.as<std::string>() + ": unknown key");
    }
  }
  QaQuestion q;
  q.id = field<std::string>(n, "id", where);
  q.question = field<std::string>(n, "question", where);
  q.answer = field<std::string>(n, "answer", where);
  q.evidence = trimmed(collapse(field<std::string>(n, "evidence", where), nullptr));
  if (n["aliases"]) q.aliases = field<std::vector<std::string>>(n, "aliases", where);
  if (n["heldout"]) q.heldout = field<bool>(n, "heldout", where);
  if (q.question.empty() || q.answer.empty() || q.evidence.empty()) {
    throw Exception(errc::invalid_argument, where + ": question, answer and evidence must not be empty");
  }
  return q;
}

// Token ids of `text` and the byte each token starts at; the pieces must spell the text back exactly, so
// evidence bytes map to tokens without re-tokenising prefixes.
struct Tokenised {
  std::vector<model::TokenId> ids;
  std::vector<size_t> starts;  // [ids.size() + 1], starts.back() == text size
};

Tokenised tokenise(const model::Vocab& vocab, const std::string& text, const std::string& what) {
  Tokenised t;
  t.ids = vocab.tokenize(text, {.add_special = false});
  t.starts.reserve(t.ids.size() + 1);
  size_t at = 0;
  for (model::TokenId id : t.ids) {
    t.starts.push_back(at);
    at += vocab.token_to_piece(id).size();
  }
  t.starts.push_back(at);
  // SentencePiece vocabularies with a dummy prefix (Llama 2, stories260K) spell one leading space more.
  if (at == text.size() + 1 && !t.ids.empty() && !text.starts_with(" ") &&
      vocab.token_to_piece(t.ids.front()).starts_with(" ")) {
    for (size_t i = 1; i < t.starts.size(); ++i) t.starts[i] -= 1;
    at -= 1;
  }
  if (at != text.size()) {
    throw Exception(errc::unsupported, what + ": the tokens do not spell the text back (" + std::to_string(at) +
                                           " bytes for " + std::to_string(text.size()) +
                                           "), so evidence bytes cannot be mapped to tokens");
  }
  return t;
}

TokenRange token_range(const Tokenised& t, std::pair<size_t, size_t> bytes) {
  const auto first = std::upper_bound(t.starts.begin(), t.starts.end(), bytes.first) - t.starts.begin() - 1;
  const auto end = std::lower_bound(t.starts.begin(), t.starts.end(), bytes.second) - t.starts.begin();
  return {static_cast<int64_t>(first), static_cast<int64_t>(end)};
}

// Regular files under each path (a file stands for itself), sorted, so filler is the same on every machine.
std::vector<std::string> filler_files(const std::vector<std::string>& paths, const std::set<std::string>& exclude) {
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) {
      out.push_back(fs::weakly_canonical(p).string());
      continue;
    }
    if (!fs::is_directory(p, ec)) throw Exception(errc::io_failed, "filler '" + p + "' is neither a file nor a directory");
    std::vector<std::string> found;
    for (const auto& e : fs::recursive_directory_iterator(p)) {
      if (e.is_regular_file()) found.push_back(fs::weakly_canonical(e.path()).string());
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  std::erase_if(out, [&](const std::string& f) { return exclude.contains(f); });
  return out;
}

// One context: its tokens (BOS first) and, per question, where its evidence sits.
struct Context {
  std::string name;
  std::vector<model::TokenId> tokens;
  std::vector<std::pair<size_t, size_t>> members;  // (document index, token offset of its first token)
};

// The questions that run under the split setting.
bool runs(const QaQuestion& q, const std::string& split) {
  return split == "all" || (split == "heldout") == q.heldout;
}

std::pair<size_t, size_t> passage_bytes(const std::string& text, std::pair<size_t, size_t> evidence, int64_t chars) {
  const size_t mid = (evidence.first + evidence.second) / 2;
  const auto half = static_cast<size_t>(std::max<int64_t>(chars, 2) / 2);
  size_t a = mid > half ? mid - half : 0;
  size_t b = std::min(text.size(), mid + half);
  a = std::min(a, evidence.first);  // never cut the evidence itself
  b = std::max(b, evidence.second);
  while (a > 0 && (static_cast<unsigned char>(text[a]) & 0xC0) == 0x80) --a;  // whole UTF-8 characters
  while (b < text.size() && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) ++b;
  return {a, b};
}

class QaRunner {
 public:
  QaRunner(const model::Model& model, model::ComputePool& pool, const Config& cfg, int32_t layer,
           const QaRealSettings& s, const std::vector<std::string>& methods, int32_t max_answer_tokens,
           bool stop_at_newline, const QaProgressFn& progress)
      : model_(model),
        pool_(pool),
        cfg_(cfg),
        s_(s),
        progress_(progress),
        prefill_settings_(eval_prefill_settings(cfg, layer, model.hparams())),
        sink_(always_kept(cfg, prefill_settings_)),
        max_answer_tokens_(max_answer_tokens),
        answerer_(model, pool, cfg, prefill_settings_.chunk, max_answer_tokens, stop_at_newline),
        words_([&model](int32_t id) { return model.vocab().token_to_piece(id); }) {
    for (const std::string& name : methods) methods_.push_back(make_method(name, cfg, model.hparams(), MethodOptions{}));
    for (const std::string& f : s.documents) docs_.push_back(load_qa_document(f));
    for (const QaDocument& d : docs_) tokenised_.push_back(tokenise(model.vocab(), d.text, d.path));
  }

  QaRun run();

 private:
  std::vector<Context> contexts() const;
  Context long_context(int64_t length) const;
  QaContextOutcome run_context(const Context& ctx);
  void probe(const Context& ctx, QaContextOutcome& out);
  QaMethodOutcome run_method(const Method& m, const MethodInputs& in, const QaQuestion& q, TokenRange ev,
                             const std::vector<model::TokenId>& ctx, const retrieval::QueryPrompt& query,
                             int64_t budget, int64_t room);
  QaPassageOutcome passage(const QaDocument& d, const QaQuestion& q);
  // What the tokenizer puts before any text (BOS where the model wants one), as ingest does.
  std::vector<model::TokenId> start_tokens() const { return model_.vocab().tokenize("", {.add_special = true}); }
  retrieval::QueryPrompt query_of(const QaQuestion& q) const { return retrieval::query_prompt(cfg_, model_, q.question); }
  // Prompt tokens around the recalled ones: the query, and the chat lead when query.chat.
  static int64_t around(const retrieval::QueryPrompt& q) { return static_cast<int64_t>(q.lead.size() + q.query.size()); }
  void say(const std::string& line) const {
    if (progress_) progress_(line);
  }

  const model::Model& model_;
  model::ComputePool& pool_;
  const Config& cfg_;
  const QaRealSettings& s_;
  const QaProgressFn& progress_;
  stages::PrefillSettings prefill_settings_;
  int64_t sink_;
  int32_t max_answer_tokens_;
  Answerer answerer_;
  retrieval::WordMap words_;
  std::vector<std::unique_ptr<Method>> methods_;
  std::vector<QaDocument> docs_;
  std::vector<Tokenised> tokenised_;
};

std::vector<Context> QaRunner::contexts() const {
  std::vector<Context> out;
  std::vector<int64_t> lengths = s_.lengths;
  std::sort(lengths.begin(), lengths.end());
  for (int64_t len : lengths) {
    if (len > 0) {
      out.push_back(long_context(len));
      continue;
    }
    for (size_t d = 0; d < docs_.size(); ++d) {
      Context c;
      c.name = docs_[d].name;
      c.tokens = start_tokens();
      c.members.emplace_back(d, c.tokens.size());
      c.tokens.insert(c.tokens.end(), tokenised_[d].ids.begin(), tokenised_[d].ids.end());
      out.push_back(std::move(c));
    }
  }
  return out;
}

// BOS, then filler and documents in turn: the documents sit at evenly spread depths of real text.
Context QaRunner::long_context(int64_t length) const {
  const model::Vocab& vocab = model_.vocab();
  const std::vector<model::TokenId> sep = vocab.tokenize("\n\n", {.add_special = false});
  auto fixed = static_cast<int64_t>(start_tokens().size());
  std::set<std::string> exclude;
  for (size_t d = 0; d < docs_.size(); ++d) {
    fixed += static_cast<int64_t>(tokenised_[d].ids.size() + 2 * sep.size());
    exclude.insert(fs::weakly_canonical(docs_[d].path).string());
  }
  if (fixed > length) {
    throw Exception(errc::invalid_argument, "qa_real length " + std::to_string(length) + " is shorter than the documents (" +
                                                std::to_string(fixed) + " tokens together)");
  }
  std::vector<model::TokenId> filler;
  const int64_t want = length - fixed;
  for (const std::string& f : filler_files(s_.filler, exclude)) {
    if (static_cast<int64_t>(filler.size()) >= want) break;
    const std::vector<model::TokenId> ids = vocab.tokenize(read_document(f), {.add_special = false});
    filler.insert(filler.end(), ids.begin(), ids.end());
    filler.insert(filler.end(), sep.begin(), sep.end());
  }
  if (static_cast<int64_t>(filler.size()) < want) {
    throw Exception(errc::invalid_argument, "qa_real length " + std::to_string(length) + ": the filler holds only " +
                                                std::to_string(filler.size()) + " of the " + std::to_string(want) +
                                                " tokens needed; add filler paths");
  }
  Context c;
  c.name = "all@" + std::to_string(length);
  c.tokens = start_tokens();
  const auto parts = static_cast<int64_t>(docs_.size() + 1);
  int64_t used = 0;
  for (int64_t i = 0; i < parts; ++i) {
    const int64_t take = i + 1 == parts ? want - used : want / parts;
    c.tokens.insert(c.tokens.end(), filler.begin() + used, filler.begin() + used + take);
    used += take;
    if (i + 1 == parts) break;
    c.tokens.insert(c.tokens.end(), sep.begin(), sep.end());
    c.members.emplace_back(static_cast<size_t>(i), c.tokens.size());
    const auto& ids = tokenised_[static_cast<size_t>(i)].ids;
    c.tokens.insert(c.tokens.end(), ids.begin(), ids.end());
    c.tokens.insert(c.tokens.end(), sep.begin(), sep.end());
  }
  return c;
}

QaMethodOutcome QaRunner::run_method(const Method& m, const MethodInputs& in, const QaQuestion& q, TokenRange ev,
                                     const std::vector<model::TokenId>& ctx, const retrieval::QueryPrompt& query,
                                     int64_t budget, int64_t room) {
  QaMethodOutcome o;
  o.method = std::string(m.name());
  o.budget = m.full_context() ? 0 : budget;
  if (m.full_context() && in.n_doc + around(query) + max_answer_tokens_ > answerer_.capacity()) {
    o.skipped = true;
    return o;
  }
  MethodInputs at = in;
  at.budget = std::min(budget, room);
  const auto t0 = Clock::now();
  std::vector<float> relevance;
  const std::vector<int64_t> idx = m.select(at, &relevance);
  o.select_ms = ms_since(t0);
  o.recalled = static_cast<int64_t>(idx.size());
  const std::vector<TokenRange> evidence{ev};
  o.cover = needle_recall(idx, evidence);
  for (const auto& [a, b] : stages::spans_of(idx)) {
    if (b > ev.first - 256 && a < ev.second + 256) o.spans.emplace_back(a, b);
  }
  if (!s_.answer) return o;
  const FinalPass f = answerer_.run_recalled(ctx, idx, query, &o.prompt_tokens, relevance);
  o.answered = true;
  o.answer = f.text;
  o.correct = qa_correct(f.text, q);
  o.answer_ms = f.total_ms;
  o.dca = f.dca;
  return o;
}

QaPassageOutcome QaRunner::passage(const QaDocument& d, const QaQuestion& q) {
  const auto [a, b] = passage_bytes(d.text, q.evidence_bytes, s_.passage_chars);
  std::vector<model::TokenId> doc = start_tokens();
  std::vector<model::TokenId> text = model_.vocab().tokenize(d.text.substr(a, b - a), {.add_special = false});
  const retrieval::QueryPrompt query = query_of(q);
  // A passage longer than the trained window keeps its middle (where the evidence is).
  const auto room = static_cast<size_t>(std::max<int64_t>(
      1, model_.hparams().n_ctx_train - static_cast<int64_t>(doc.size()) - around(query) - max_answer_tokens_));
  if (text.size() > room) {
    const size_t cut = (text.size() - room) / 2;
    text = std::vector<model::TokenId>(text.begin() + static_cast<std::ptrdiff_t>(cut),
                                       text.begin() + static_cast<std::ptrdiff_t>(cut + room));
  }
  doc.insert(doc.end(), text.begin(), text.end());
  // The whole passage "recalled": the prompt ask would build had recall found exactly this text.
  std::vector<int64_t> all(doc.size());
  std::iota(all.begin(), all.end(), 0);
  QaPassageOutcome o;
  o.id = q.id;
  const FinalPass f = answerer_.run_recalled(doc, all, query, &o.prompt_tokens);
  o.answer = f.text;
  o.correct = qa_correct(f.text, q);
  return o;
}

QaContextOutcome QaRunner::run_context(const Context& ctx) {
  const model::HParams& hp = model_.hparams();
  QaContextOutcome out;
  out.name = ctx.name;
  out.n_tokens = static_cast<int64_t>(ctx.tokens.size());
  const auto t0 = Clock::now();
  PrefillKeys p(model_, pool_, cfg_, prefill_settings_);
  p.run(ctx.tokens);
  out.prefill_ms = ms_since(t0);
  say(ctx.name + ": " + std::to_string(out.n_tokens) + " tokens, prefill to layer " +
      std::to_string(prefill_settings_.layer) + " in " + std::to_string(static_cast<int>(out.prefill_ms / 1000)) + " s");
  for (const auto& [d, offset] : ctx.members) {
    for (const QaQuestion& q : docs_[d].questions) {
      if (!runs(q, s_.split)) continue;
      QaQuestionOutcome qo;
      qo.id = q.id;
      qo.document = docs_[d].name;
      qo.heldout = q.heldout;
      qo.question = q.question;
      qo.answer = q.answer;
      const TokenRange local = token_range(tokenised_[d], q.evidence_bytes);
      qo.evidence = {local.first + static_cast<int64_t>(offset), local.second + static_cast<int64_t>(offset)};
      const retrieval::QueryPrompt query = query_of(q);
      const std::vector<model::TokenId> question = model_.vocab().tokenize(q.question, {.add_special = false});
      const std::vector<float> queries = p.queries(query.query);
      const MethodInputs in{.n_doc = out.n_tokens,
                            .keys = p.keys(),
                            .queries = queries,
                            .n_query = static_cast<int64_t>(query.query.size()),
                            .layout = {hp.n_head, hp.n_head_kv, hp.head_dim_k},
                            .budget = 0,
                            .sink = sink_,
                            .doc_tokens = ctx.tokens,
                            .question_tokens = question,
                            .words = &words_,
                            .question_begin = static_cast<int64_t>(query.question_begin),
                            .question_end = static_cast<int64_t>(query.question_end)};
      const int64_t room = answerer_.capacity() - around(query) - max_answer_tokens_;
      std::string line = ctx.name + " " + q.id + ":";
      for (const auto& m : methods_) {
        if (m->full_context()) {
          qo.methods.push_back(run_method(*m, in, q, qo.evidence, ctx.tokens, query, out.n_tokens, out.n_tokens));
          continue;
        }
        for (int64_t b : s_.budgets) {
          qo.methods.push_back(run_method(*m, in, q, qo.evidence, ctx.tokens, query, b, room));
          const QaMethodOutcome& o = qo.methods.back();
          char buf[96];
          std::snprintf(buf, sizeof(buf), " %s@%lld %.2f%s", o.method.c_str(), static_cast<long long>(b), o.cover,
                        o.answered ? (o.correct ? " ok" : " no") : "");
          line += buf;
        }
      }
      say(line);
      out.questions.push_back(std::move(qo));
    }
  }
  if (!s_.probe_layers.empty()) probe(ctx, out);
  return out;
}

// The probe's rows as indices into probe_layers: each layer alone, then each probe_combine group.
std::vector<std::vector<size_t>> probe_rows(const QaRealSettings& s) {
  std::vector<std::vector<size_t>> rows;
  for (size_t li = 0; li < s.probe_layers.size(); ++li) rows.push_back({li});
  for (const auto& group : s.probe_combine) {
    std::vector<size_t>& row = rows.emplace_back();
    for (int32_t l : group) {
      row.push_back(static_cast<size_t>(std::find(s.probe_layers.begin(), s.probe_layers.end(), l) - s.probe_layers.begin()));
    }
  }
  return rows;
}

// "5" or "5+11".
std::string probe_row_label(const QaRealSettings& s, const std::vector<size_t>& row) {
  std::string label;
  for (size_t li : row) label += (label.empty() ? "" : "+") + std::to_string(s.probe_layers[li]);
  return label;
}

// Recall of ilre (the configured scoring and pooling) at every probe layer, from one streaming pass that
// keeps each layer's keys: the real-text side of choosing l_R.
void QaRunner::probe(const Context& ctx, QaContextOutcome& out) {
  const model::HParams& hp = model_.hparams();
  const int32_t last = *std::max_element(s_.probe_layers.begin(), s_.probe_layers.end());
  const auto t0 = Clock::now();
  LayerProbe lp(model_, pool_,
                ProbeSettings{.sink = prefill_settings_.sink, .window = prefill_settings_.window,
                              .chunk = prefill_settings_.chunk, .last_layer = last});
  lp.run(ctx.tokens);
  std::vector<std::vector<float>> keys;
  for (int32_t l : s_.probe_layers) {
    keys.push_back(lp.keys(l));
    round_like_store(keys.back(), cfg_.store.key_dtype);
  }
  const auto ilre = make_method("ilre", cfg_, hp, MethodOptions{});
  const std::vector<std::vector<size_t>> rows = probe_rows(s_);
  size_t qi = 0;
  for (const auto& [d, offset] : ctx.members) {
    for (const QaQuestion& q : docs_[d].questions) {
      if (!runs(q, s_.split)) continue;
      QaQuestionOutcome& qo = out.questions[qi++];
      const retrieval::QueryPrompt query = query_of(q);
      const std::vector<model::TokenId> question = model_.vocab().tokenize(q.question, {.add_special = false});
      const std::vector<std::vector<float>> queries = lp.encode_query(query.query);
      for (const std::vector<size_t>& row_layers : rows) {
        const size_t li = row_layers.front();
        std::vector<MethodInputs::Layer> more;
        for (size_t k = 1; k < row_layers.size(); ++k) {
          more.push_back({keys[row_layers[k]], queries[static_cast<size_t>(s_.probe_layers[row_layers[k]])]});
        }
        std::vector<double> row;
        for (int64_t b : s_.budgets) {
          const MethodInputs in{.n_doc = out.n_tokens,
                                .keys = keys[li],
                                .queries = queries[static_cast<size_t>(s_.probe_layers[li])],
                                .n_query = static_cast<int64_t>(query.query.size()),
                                .layout = {hp.n_head, hp.n_head_kv, hp.head_dim_k},
                                .budget = std::min<int64_t>(b, answerer_.capacity() - around(query) - max_answer_tokens_),
                                .sink = sink_,
                                .doc_tokens = ctx.tokens,
                                .question_tokens = question,
                                .words = &words_,
                                .question_begin = static_cast<int64_t>(query.question_begin),
                                .question_end = static_cast<int64_t>(query.question_end),
                                .more_layers = more};
          row.push_back(needle_recall(ilre->select(in), std::vector<TokenRange>{qo.evidence}));
        }
        qo.probe_cover.push_back(std::move(row));
      }
    }
  }
  out.probe_ms = ms_since(t0);
  say(ctx.name + ": layer probe to layer " + std::to_string(last) + " in " +
      std::to_string(static_cast<int>(out.probe_ms / 1000)) + " s");
}

QaRun QaRunner::run() {
  const auto t0 = Clock::now();
  QaRun r;
  r.settings = s_;
  for (const auto& m : methods_) r.methods.emplace_back(m->name());
  r.layer = static_cast<int32_t>(prefill_settings_.layer);
  if (s_.answer) {
    for (const QaDocument& d : docs_) {
      for (const QaQuestion& q : d.questions) {
        if (!runs(q, s_.split)) continue;
        r.passages.push_back(passage(d, q));
        say("passage " + q.id + ": " + (r.passages.back().correct ? "ok" : "no") + " (" + trimmed(collapse(r.passages.back().answer, nullptr)) + ")");
      }
    }
  }
  for (const Context& c : contexts()) r.contexts.push_back(run_context(c));
  r.seconds = ms_since(t0) / 1000.0;
  return r;
}

// ---- report ----

struct Tally {
  double cover = 0.0;
  int whole = 0;
  int correct = 0;
  int answered = 0;
  int n = 0;
  void add(double c, bool answered_, bool ok) {
    cover += c;
    whole += c >= 0.9 ? 1 : 0;
    n += 1;
    answered += answered_ ? 1 : 0;
    correct += ok ? 1 : 0;
  }
  std::string text() const {
    if (n == 0) return "–";
    char buf[64];
    if (answered > 0) {
      std::snprintf(buf, sizeof(buf), "%.2f / %.0f%% / %.0f%%", cover / n, 100.0 * whole / n, 100.0 * correct / answered);
    } else {
      std::snprintf(buf, sizeof(buf), "%.2f / %.0f%%", cover / n, 100.0 * whole / n);
    }
    return buf;
  }
};

std::string length_label(const std::string& context) {
  return context.starts_with("all@") ? context : "document alone";
}

}  // namespace

namespace {

// A document with its whitespace collapsed once, searched for every question's evidence.
struct CollapsedText {
  std::vector<size_t> origin;
  std::string text;
  explicit CollapsedText(const std::string& raw) : text(collapse(raw, &origin)) {}
};

std::pair<size_t, size_t> find_in(const CollapsedText& doc, const std::string& needle) {
  const std::string& hay = doc.text;
  const std::vector<size_t>& origin = doc.origin;
  const std::string n = trimmed(collapse(needle, nullptr));
  if (n.empty()) throw Exception(errc::invalid_argument, "empty evidence");
  const size_t at = hay.find(n);
  if (at == std::string::npos) throw Exception(errc::invalid_argument, "not found");
  if (hay.find(n, at + 1) != std::string::npos) throw Exception(errc::invalid_argument, "found more than once");
  return {origin[at], origin[at + n.size() - 1] + 1};
}

}  // namespace

std::pair<size_t, size_t> find_collapsed(const std::string& text, const std::string& needle) {
  return find_in(CollapsedText(text), needle);
}

QaDocument load_qa_document(const std::string& question_file) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(question_file);
  } catch (const YAML::BadFile&) {
    throw Exception(errc::io_failed, "cannot read question file '" + question_file + "'");
  } catch (const YAML::Exception& e) {
    throw Exception(errc::bad_json, question_file + ": " + e.msg);
  }
  if (!root.IsMap()) throw Exception(errc::invalid_argument, question_file + ": expected a mapping");
  QaDocument d;
  d.name = field<std::string>(root, "document", question_file);
  d.package = field<std::string>(root, "package", question_file);
  d.path = field<std::string>(root, "path", question_file);
  const YAML::Node qs = root["questions"];
  if (!qs || !qs.IsSequence() || qs.size() == 0) {
    throw Exception(errc::invalid_argument, question_file + ": 'questions' must be a non-empty list");
  }
  std::error_code ec;
  if (!fs::exists(d.path, ec)) {
    throw Exception(errc::io_failed, question_file + ": document '" + d.path + "' is not installed; install it with "
                                     "`apt-get install " + d.package + "` (or scripts/fetch-eval-docs.sh)");
  }
  d.text = read_document(d.path);
  const CollapsedText collapsed(d.text);
  std::set<std::string> ids;
  for (size_t i = 0; i < qs.size(); ++i) {
    QaQuestion q = parse_question(qs[i], question_file + ": questions[" + std::to_string(i) + "]");
    if (!ids.insert(q.id).second) throw Exception(errc::invalid_argument, question_file + ": question id '" + q.id + "' twice");
    try {
      q.evidence_bytes = find_in(collapsed, q.evidence);
    } catch (const Exception& e) {
      throw Exception(errc::invalid_argument, question_file + ": " + q.id + ": evidence " + e.error().message + " in '" + d.path +
                                                  "' (exactly one occurrence is needed; is the installed " + d.package +
                                                  " another version?)");
    }
    d.questions.push_back(std::move(q));
  }
  return d;
}

namespace {

// Lower-case runs of letters, digits and '_' ("CORE::dump()" -> core dump); a '-' directly before a digit
// and after no word character stays ("-1", "gzip -9"), so "1" does not answer "-1".
std::vector<std::string> answer_words(std::string_view text) {
  std::vector<std::string> out;
  std::string w;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (std::isalnum(c) || c == '_' || c >= 0x80) {
      w += static_cast<char>(std::tolower(c));
      continue;
    }
    if (!w.empty()) out.push_back(std::move(w));
    w.clear();
    if (c == '-' && i + 1 < text.size() && std::isdigit(static_cast<unsigned char>(text[i + 1])) &&
        (i == 0 || !std::isalnum(static_cast<unsigned char>(text[i - 1])))) {
      w = "-";
    }
  }
  if (!w.empty()) out.push_back(std::move(w));
  return out;
}

// The expected words, in order and adjacent, somewhere in the reply: "128" is not answered by "1", and
// "pumpkin" not by "pumpkins".
bool says(const std::vector<std::string>& reply, const std::string& expected) {
  const std::vector<std::string> want = answer_words(expected);
  if (want.empty()) return false;
  return std::search(reply.begin(), reply.end(), want.begin(), want.end()) != reply.end();
}

}  // namespace

bool qa_correct(const std::string& reply, const QaQuestion& q) {
  const std::vector<std::string> words = answer_words(reply);
  if (says(words, q.answer)) return true;
  return std::any_of(q.aliases.begin(), q.aliases.end(), [&](const std::string& a) { return says(words, a); });
}

void QaRealSettings::validate() const {
  auto bad = [](const std::string& what) { throw Exception(errc::invalid_argument, "qa_real: " + what); };
  if (documents.empty()) bad("documents must not be empty");
  if (lengths.empty()) bad("lengths must not be empty");
  for (int64_t n : lengths) {
    if (n < 0) bad("lengths are 0 (each document alone) or a token count");
  }
  if (budgets.empty()) bad("budgets must not be empty");
  for (int64_t b : budgets) {
    if (b < 1) bad("budgets must be >= 1");
  }
  if (passage_chars < 100 || passage_chars > 100000) bad("passage_chars must be in 100..100000");
  for (int32_t l : probe_layers) {
    if (l < 0) bad("probe_layers must be >= 0");
  }
  for (const auto& group : probe_combine) {
    if (group.size() < 2) bad("probe_combine groups name at least two layers");
    for (int32_t l : group) {
      if (std::find(probe_layers.begin(), probe_layers.end(), l) == probe_layers.end()) {
        bad("probe_combine layer " + std::to_string(l) + " is not among probe_layers");
      }
    }
  }
  if (split != "all" && split != "tune" && split != "heldout") bad("split must be all, tune or heldout");
  const bool long_ctx = std::any_of(lengths.begin(), lengths.end(), [](int64_t n) { return n > 0; });
  if (long_ctx && filler.empty()) bad("lengths above 0 need filler paths");
  if (long_ctx && !probe_layers.empty()) bad("probe_layers keeps every layer's keys: use it with lengths [0] only");
}

nlohmann::json QaRealSettings::to_json() const {
  return {{"documents", documents}, {"lengths", lengths},      {"filler", filler},
          {"budgets", budgets},     {"answer", answer},        {"passage_chars", passage_chars},
          {"probe_layers", probe_layers}, {"probe_combine", probe_combine}, {"split", split}};
}

QaRun run_qa_real(const model::Model& model, model::ComputePool& pool, const Config& cfg, int32_t layer,
                  const QaRealSettings& settings, const std::vector<std::string>& methods, int32_t max_answer_tokens,
                  bool stop_at_newline, const QaProgressFn& progress) {
  settings.validate();
  for (int32_t l : settings.probe_layers) {
    if (l >= model.hparams().n_layer) {
      throw Exception(errc::invalid_argument, "qa_real: probe layer " + std::to_string(l) + " is outside the model's " +
                                                  std::to_string(model.hparams().n_layer) + " layers");
    }
  }
  QaRunner runner(model, pool, cfg, layer, settings, methods, max_answer_tokens, stop_at_newline, progress);
  QaRun r = runner.run();
  r.model = model.path();
  Config resolved = cfg;
  resolved.prefill.layer = layer;
  r.config_yaml = to_yaml(resolved);
  return r;
}

nlohmann::json to_json(const QaRun& r) {
  nlohmann::json ctxs = nlohmann::json::array();
  for (const QaContextOutcome& c : r.contexts) {
    nlohmann::json qs = nlohmann::json::array();
    for (const QaQuestionOutcome& q : c.questions) {
      nlohmann::json ms = nlohmann::json::array();
      for (const QaMethodOutcome& m : q.methods) {
        ms.push_back({{"method", m.method}, {"budget", m.budget}, {"recalled", m.recalled}, {"skipped", m.skipped}, {"cover", m.cover},
                      {"answered", m.answered}, {"answer", m.answer}, {"correct", m.correct},
                      {"prompt_tokens", m.prompt_tokens}, {"select_ms", m.select_ms}, {"answer_ms", m.answer_ms},
                      {"dca", m.dca}, {"spans_near_evidence", m.spans}});
      }
      qs.push_back({{"id", q.id}, {"document", q.document}, {"heldout", q.heldout}, {"question", q.question},
                    {"expected", q.answer}, {"evidence_tokens", {q.evidence.first, q.evidence.second}},
                    {"methods", ms}, {"probe_cover", q.probe_cover}});
    }
    ctxs.push_back({{"name", c.name}, {"tokens", c.n_tokens}, {"prefill_ms", c.prefill_ms}, {"probe_ms", c.probe_ms},
                    {"questions", qs}});
  }
  nlohmann::json ps = nlohmann::json::array();
  for (const QaPassageOutcome& p : r.passages) {
    ps.push_back({{"id", p.id}, {"answer", p.answer}, {"correct", p.correct}, {"prompt_tokens", p.prompt_tokens}});
  }
  return {{"task", "qa_real"}, {"model", r.model}, {"layer", r.layer}, {"settings", r.settings.to_json()},
          {"methods", r.methods}, {"config", r.config_yaml}, {"contexts", ctxs}, {"passages", ps},
          {"seconds", r.seconds}};
}

std::string qa_markdown(const QaRun& r) {
  std::ostringstream md;
  md << "### qa_real: " << fs::path(r.model).filename().string() << ", l_R = " << r.layer << "\n\n";
  md << "Cells: evidence recall / evidence recalled whole (>= 0.9) / accuracy. tune | heldout.\n\n";
  // (length label, method, budget) -> tallies for tune and heldout
  std::map<std::tuple<std::string, std::string, int64_t>, std::pair<Tally, Tally>> cells;
  std::vector<std::string> labels;
  for (const QaContextOutcome& c : r.contexts) {
    const std::string label = length_label(c.name);
    if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
    for (const QaQuestionOutcome& q : c.questions) {
      for (const QaMethodOutcome& m : q.methods) {
        if (m.skipped) continue;
        auto& t = cells[{label, m.method, m.budget}];
        (q.heldout ? t.second : t.first).add(m.cover, m.answered, m.correct);
      }
    }
  }
  md << "| context | method | budget | tune | heldout |\n|---|---|---|---|---|\n";
  for (const std::string& label : labels) {
    for (const std::string& method : r.methods) {
      for (const auto& [key, t] : cells) {
        if (std::get<0>(key) != label || std::get<1>(key) != method) continue;
        md << "| " << label << " | " << method << " | " << (std::get<2>(key) == 0 ? std::string("all") : std::to_string(std::get<2>(key)))
           << " | " << t.first.text() << " | " << t.second.text() << " |\n";
      }
    }
  }
  if (!r.passages.empty()) {
    std::map<std::string, bool> heldout;
    for (const QaContextOutcome& c : r.contexts) {
      for (const QaQuestionOutcome& q : c.questions) heldout[q.id] = q.heldout;
    }
    int ok[2] = {0, 0}, n[2] = {0, 0};
    for (const QaPassageOutcome& p : r.passages) {
      const int h = heldout[p.id] ? 1 : 0;
      n[h] += 1;
      ok[h] += p.correct ? 1 : 0;
    }
    char buf[160];
    std::snprintf(buf, sizeof(buf), "\nPassage alone (%lld bytes around the evidence): accuracy %.0f%% tune (%d/%d), %.0f%% heldout (%d/%d)\n",
                  static_cast<long long>(r.settings.passage_chars), n[0] ? 100.0 * ok[0] / n[0] : 0.0, ok[0], n[0],
                  n[1] ? 100.0 * ok[1] / n[1] : 0.0, ok[1], n[1]);
    md << buf;
  }
  if (!r.settings.probe_layers.empty()) {
    md << "\nEvidence recall of ilre per layer (layer probe; tune questions | heldout):\n\n| layer |";
    for (int64_t b : r.settings.budgets) md << " " << b << " |";
    md << "\n|---|";
    for (size_t i = 0; i < r.settings.budgets.size(); ++i) md << "---|";
    md << "\n";
    const std::vector<std::vector<size_t>> rows = probe_rows(r.settings);
    for (size_t li = 0; li < rows.size(); ++li) {
      md << "| " << probe_row_label(r.settings, rows[li]) << " |";
      for (size_t bi = 0; bi < r.settings.budgets.size(); ++bi) {
        double sum[2] = {0, 0};
        int n[2] = {0, 0};
        for (const QaContextOutcome& c : r.contexts) {
          for (const QaQuestionOutcome& q : c.questions) {
            if (li >= q.probe_cover.size()) continue;
            sum[q.heldout ? 1 : 0] += q.probe_cover[li][bi];
            n[q.heldout ? 1 : 0] += 1;
          }
        }
        char buf[48];
        std::snprintf(buf, sizeof(buf), " %.2f \\| %.2f |", n[0] ? sum[0] / n[0] : 0.0, n[1] ? sum[1] / n[1] : 0.0);
        md << buf;
      }
      md << "\n";
    }
  }
  return md.str();
}

}  // namespace ilre::eval
