// libFuzzer target for the key store reader (storage/store_reader.cpp, manifest.cpp, segment_codec.cpp).
//
// One input is a whole store directory packed in a small container (below): the harness writes
// manifest.json, the segment files and the state file into a per-process temporary store, then calls
// StoreReader::open and, on success, reads everything back (read_segment in every key format,
// read_segment_into, segment_tokens, tokens_at, state, verify). Every call must either succeed or return an
// ilre::Error whose code is one the reader documents. Anything else is a finding: a crash, a sanitizer report
// (ASan/UBSan), an escaping exception, errc::internal ("always a bug": in the reader it means a bad_alloc or
// length_error was caught), an allocation above -malloc_limit_mb / -rss_limit_mb, a timeout, or a violated
// invariant of a successful read (checked below; __builtin_trap()).
//
// Container: byte 0 = flags, then records [u8 tag][u16 length, LE][length bytes] (a record cut off by the end
// of the input is kept, shortened). tag 0 = manifest.json, 1 = the state file (written under the name the
// manifest's state.file gives, if that is a valid state file name, else state-000001.bin), t >= 2 = segment
// file segments/seg-%06d.ilk of index (t - 2) % 64. A later record with the same tag replaces an earlier one.
// Flags (applied by the harness after mutation, before the files are written), so that mutated files get past
// the checksums and consistency checks and reach the decoders:
//   0x01  recompute checksums: each segment's header CRC (bytes 60..63), its file CRC32C and prefix CRC32C
//         (header + token frame, T from the header) into the manifest, the state file's CRC32C, and last the
//         manifest's own canonical-content checksum.
//   0x02  fix derived manifest fields: key_width = n_kv_heads * head_dim; per segment first_pos (running sum),
//         raw_key_bytes, stored_bytes / stored_token_bytes / stored_key_bytes from the file (and the header's
//         key frame size K = file size - 64 - T); n_tokens; the state's size.
//   0x04  copy the manifest's first_pos, n_tokens, key_width, key_dtype and shuffle into each segment header.
//   0x18  (bits 3-4) the KeyFormat read_segment is called with first (0 f32, 1 f16, 2 bf16, 3 f32).
//
// Built with -DILRE_STORE_FUZZ_SEEDS (and without -fsanitize=fuzzer) the same file is `store_fuzz_seeds`, which
// writes valid stores with StoreWriter (f16 and bf16, every shuffle mode, several segments, state blobs) and
// packs them into this container, plus a libFuzzer dictionary.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ilre/error.h"
#include "storage/checksum.h"
#include "storage/manifest.h"
#include "storage/segment_codec.h"
#include "storage/store_reader.h"
#include "storage/store_types.h"

namespace {

using namespace ilre::storage;
using nlohmann::json;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

constexpr uint8_t kFixChecksums = 0x01;
constexpr uint8_t kFixDerived = 0x02;
constexpr uint8_t kSyncHeaders = 0x04;
constexpr size_t kMaxSegments = 64;

struct Container {
  uint8_t flags = 0;
  std::optional<std::string> manifest;
  std::optional<std::string> state;
  std::map<size_t, std::string> segments;  // index -> file bytes
};

Container unpack(const uint8_t* data, size_t size) {
  Container c;
  if (size == 0) return c;
  c.flags = data[0];
  size_t at = 1;
  while (at < size) {
    const uint8_t tag = data[at++];
    size_t len = 0;
    if (at < size) len = data[at++];
    if (at < size) len |= static_cast<size_t>(data[at++]) << 8;
    len = std::min(len, size - at);
    std::string payload(reinterpret_cast<const char*>(data + at), len);
    at += len;
    if (tag == 0) c.manifest = std::move(payload);
    else if (tag == 1) c.state = std::move(payload);
    else c.segments[(tag - 2u) % kMaxSegments] = std::move(payload);
  }
  return c;
}

template <class T>
T get_le(const std::string& s, size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof v);
  return v;
}
template <class T>
void put_le(std::string& s, size_t off, T v) {
  std::memcpy(s.data() + off, &v, sizeof v);
}

uint32_t crc_of(const std::string& s, size_t n) { return crc32c(s.data(), n); }

std::optional<int64_t> int_at(const json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->is_number_unsigned() ? static_cast<int64_t>(it->get<uint64_t>()) : it->get<int64_t>();
}

std::string state_name_of(const json& j) {
  if (j.is_object()) {
    auto st = j.find("state");
    if (st != j.end() && st->is_object()) {
      auto f = st->find("file");
      if (f != st->end() && f->is_string() && is_state_file_name(f->get<std::string>())) return f->get<std::string>();
    }
  }
  return "state-000001.bin";
}

// The fix-ups of the flags above. Works on whatever JSON the fuzzer left; every step skips what is not there.
void fix_up(Container& c, json& j) {
  if (!j.is_object()) return;
  json* segs = j.contains("segments") && j["segments"].is_array() ? &j["segments"] : nullptr;
  const std::optional<int64_t> heads = int_at(j, "n_kv_heads");
  const std::optional<int64_t> hdim = int_at(j, "head_dim");
  if ((c.flags & kFixDerived) && heads && hdim) {
    j["key_width"] = static_cast<int64_t>(static_cast<uint64_t>(*heads) * static_cast<uint64_t>(*hdim));
  }
  const std::optional<int64_t> width = int_at(j, "key_width");
  if ((c.flags & kFixDerived) && segs) {
    uint64_t next = 0;
    for (size_t i = 0; i < segs->size(); ++i) {
      json& sj = (*segs)[i];
      if (!sj.is_object()) continue;
      sj["first_pos"] = static_cast<int64_t>(next);
      const std::optional<int64_t> n = int_at(sj, "n_tokens");
      if (n) {
        next += static_cast<uint64_t>(*n);
        if (width) sj["raw_key_bytes"] = static_cast<uint64_t>(*n) * static_cast<uint64_t>(*width) * 2;
      }
      auto f = c.segments.find(i);
      if (f == c.segments.end()) continue;
      std::string& file = f->second;
      sj["stored_bytes"] = static_cast<uint64_t>(file.size());
      if (file.size() >= kSegmentHeaderBytes) {
        const uint64_t t = get_le<uint64_t>(file, 40);
        if (t <= file.size() - kSegmentHeaderBytes) {
          const uint64_t k = file.size() - kSegmentHeaderBytes - t;
          put_le<uint64_t>(file, 48, k);
          sj["stored_token_bytes"] = t;
          sj["stored_key_bytes"] = k;
        }
      }
    }
    j["n_tokens"] = static_cast<int64_t>(next);
  }
  if ((c.flags & kFixDerived) && c.state && j.contains("state") && j["state"].is_object()) {
    j["state"]["size"] = static_cast<uint64_t>(c.state->size());
  }
  if ((c.flags & kSyncHeaders) && segs) {
    uint8_t dtype = 0;
    if (j.contains("key_dtype") && j["key_dtype"].is_string()) {
      if (auto d = key_dtype_from_name(j["key_dtype"].get<std::string>())) dtype = static_cast<uint8_t>(*d);
    }
    for (auto& [i, file] : c.segments) {
      if (i >= segs->size() || file.size() < kSegmentHeaderBytes) continue;
      const json& sj = (*segs)[i];
      if (auto v = int_at(sj, "first_pos")) put_le<int64_t>(file, 16, *v);
      if (auto v = int_at(sj, "n_tokens")) put_le<int64_t>(file, 24, *v);
      if (width) put_le<uint32_t>(file, 32, static_cast<uint32_t>(*width));
      if (dtype) file[36] = static_cast<char>(dtype);
      if (sj.is_object() && sj.contains("shuffle") && sj["shuffle"].is_string()) {
        if (auto s = shuffle_from_name(sj["shuffle"].get<std::string>())) file[37] = static_cast<char>(*s);
      }
    }
  }
  if (c.flags & kFixChecksums) {
    for (auto& [i, file] : c.segments) {
      if (file.size() >= kSegmentHeaderBytes) put_le<uint32_t>(file, 60, crc_of(file, 60));
      if (!segs || i >= segs->size() || !(*segs)[i].is_object()) continue;
      json& sj = (*segs)[i];
      sj["checksum"] = checksum_to_string(crc_of(file, file.size()));
      size_t prefix = file.size();
      if (file.size() >= kSegmentHeaderBytes) {
        const uint64_t t = get_le<uint64_t>(file, 40);
        if (t <= file.size() - kSegmentHeaderBytes) prefix = kSegmentHeaderBytes + t;
      }
      sj["prefix_checksum"] = checksum_to_string(crc_of(file, prefix));
    }
    if (c.state && j.contains("state") && j["state"].is_object()) {
      j["state"]["checksum"] = checksum_to_string(crc_of(*c.state, c.state->size()));
    }
    json canon = j;
    canon.erase("checksum");
    const std::string text = canon.dump();
    j["checksum"] = checksum_to_string(crc32c(text.data(), text.size()));
  }
}

struct TempStore {
  std::string dir;
  std::vector<std::string> written;  // paths written for the previous input, removed before the next
  TempStore() {
    const char* tmp = std::getenv("TMPDIR");
    dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/ilre-store-fuzz-" + std::to_string(::getpid());
    ::mkdir(dir.c_str(), 0755);
    ::mkdir((dir + "/segments").c_str(), 0755);
  }
  void remove() {
    clear();
    ::rmdir((dir + "/segments").c_str());
    ::rmdir(dir.c_str());
  }
  void clear() {
    for (const std::string& p : written) ::unlink(p.c_str());
    written.clear();
  }
  void write(const std::string& rel, const std::string& bytes) {
    const std::string path = dir + "/" + rel;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) __builtin_trap();  // the harness's own failure, not the reader's
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) __builtin_trap();
    std::fclose(f);
    written.push_back(path);
  }
};

TempStore& temp_store() {
  static TempStore t;
  // Registered after t is constructed, so it runs before t's destructor. Not after a crash: the directory stays.
  static const int registered = std::atexit([] { t.remove(); });
  (void)registered;
  return t;
}

// Codes the reader documents for a bad store; errc::internal (a caught bad_alloc / length_error) is a finding.
bool expected_code(ilre::errc c) {
  using ilre::errc;
  return c == errc::io_failed || c == errc::checksum_mismatch || c == errc::unsupported || c == errc::bad_json ||
         c == errc::out_of_range || c == errc::invalid_argument || c == errc::model_mismatch;
}

template <class R>
bool ok_or_expected(const R& r) {
  if (r) return true;
  FUZZ_CHECK(expected_code(r.error().code));
  FUZZ_CHECK(!r.error().message.empty());
  return false;
}

void check_segment(const StoreReader& r, size_t i, KeyFormat want, const Segment& s) {
  const SegmentInfo& info = r.segments()[i];
  const size_t n_values = static_cast<size_t>(info.n_tokens) * static_cast<size_t>(r.meta().key_width());
  FUZZ_CHECK(s.first_pos == info.first_pos && s.n_tokens == info.n_tokens);
  FUZZ_CHECK(s.key_width == r.meta().key_width() && s.format == want);
  FUZZ_CHECK(s.tokens.size() == static_cast<size_t>(info.n_tokens));
  if (want == KeyFormat::f32) {
    FUZZ_CHECK(s.keys_f32.size() == n_values && s.keys_16.empty());
  } else {
    FUZZ_CHECK(s.keys_16.size() == n_values && s.keys_f32.empty());
  }
}

void exercise(const StoreReader& r, KeyFormat first) {
  const auto& segs = r.segments();
  FUZZ_CHECK(segs.size() <= kMaxSegments);  // more would need files the container cannot hold
  int64_t next = 0;
  for (const SegmentInfo& s : segs) {
    FUZZ_CHECK(s.first_pos == next && s.n_tokens >= 1);
    next = s.end_pos();
  }
  FUZZ_CHECK(next == r.n_tokens());
  FUZZ_CHECK(r.meta().key_width() > 0);
  (void)r.stats().key_compression_ratio();
  (void)r.check_model(r.meta().model_fingerprint, r.meta().retrieval_layer);
  ok_or_expected(r.check_model("other", r.meta().retrieval_layer));

  std::vector<std::vector<int32_t>> tokens(segs.size());
  std::vector<bool> have(segs.size(), false);
  Segment seg;
  for (size_t i = 0; i < segs.size(); ++i) {
    FUZZ_CHECK(r.segment_of(segs[i].first_pos) == i);
    FUZZ_CHECK(r.segment_of(segs[i].end_pos() - 1) == i);
    auto s = r.read_segment(i, first);
    if (ok_or_expected(s)) {
      check_segment(r, i, first, *s);
      tokens[i] = s->tokens;
      have[i] = true;
      // The other formats through read_segment_into (reusing one Segment), which must then also succeed.
      for (KeyFormat f : {KeyFormat::f32, KeyFormat::f16, KeyFormat::bf16}) {
        if (f == first) continue;
        auto ri = r.read_segment_into(i, f, seg);
        FUZZ_CHECK(ri.has_value());
        check_segment(r, i, f, seg);
        FUZZ_CHECK(seg.tokens == tokens[i]);
      }
    }
    auto t = r.segment_tokens(i);
    if (ok_or_expected(t)) {
      FUZZ_CHECK(t->size() == static_cast<size_t>(segs[i].n_tokens));
      if (have[i]) FUZZ_CHECK(*t == tokens[i]);
    } else {
      FUZZ_CHECK(!have[i]);  // the whole file verified, so its prefix does too
    }
  }
  ok_or_expected(r.read_segment(segs.size(), KeyFormat::f32));  // out_of_range
  ok_or_expected(r.segment_tokens(segs.size()));
  const int64_t n = r.n_tokens();
  if (n > 0) {
    std::vector<int64_t> pos = {0, n / 3, n / 2, n / 2, n - 1};
    auto t = r.tokens_at(pos);
    if (ok_or_expected(t)) {
      FUZZ_CHECK(t->size() == pos.size());
      for (size_t k = 0; k < pos.size(); ++k) {
        const size_t i = *r.segment_of(pos[k]);
        if (have[i]) FUZZ_CHECK((*t)[k] == tokens[i][static_cast<size_t>(pos[k] - segs[i].first_pos)]);
      }
    }
    const std::vector<int64_t> unsorted = {n - 1, 0};
    if (n > 1) FUZZ_CHECK(!ok_or_expected(r.tokens_at(unsorted)));
  }
  const std::vector<int64_t> outside = {n};
  FUZZ_CHECK(!ok_or_expected(r.tokens_at(outside)));
  FUZZ_CHECK(r.tokens_at({}).has_value());
  if (r.has_state()) {
    auto st = r.state();
    if (ok_or_expected(st)) FUZZ_CHECK(st->size() == r.state_info()->size);
  } else {
    FUZZ_CHECK(!ok_or_expected(r.state()));
  }
  // verify() reads every segment and the state: it succeeds exactly when each of those reads did.
  bool all = !r.has_state() || r.state().has_value();
  for (size_t i = 0; i < segs.size(); ++i) all = all && have[i];
  FUZZ_CHECK(ok_or_expected(r.verify()) == all);
}

}  // namespace

#ifndef ILRE_STORE_FUZZ_SEEDS

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Container c = unpack(data, size);
  TempStore& ts = temp_store();
  ts.clear();
  json j;
  if (c.manifest) j = json::parse(c.manifest->begin(), c.manifest->end(), nullptr, /*allow_exceptions=*/false);
  if (c.manifest && (c.flags & (kFixChecksums | kFixDerived | kSyncHeaders)) && j.is_object()) {
    try {
      fix_up(c, j);
      *c.manifest = j.dump(1) + "\n";
    } catch (const json::exception&) {
      // e.g. a number the fix-up cannot store; keep the text as it was
    }
  }
  if (c.manifest) ts.write(std::string(kManifestFile), *c.manifest);
  if (c.state) ts.write(state_name_of(j), *c.state);
  for (const auto& [i, file] : c.segments) ts.write(segment_file_name(i), file);

  auto r = StoreReader::open(ts.dir);
  if (!ok_or_expected(r)) return 0;
  const KeyFormat first = static_cast<KeyFormat>(((c.flags >> 3) & 3) % 3);
  exercise(*r, first);
  return 0;
}

#else  // ILRE_STORE_FUZZ_SEEDS: write a seed corpus and a dictionary.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "storage/store_writer.h"

namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void add_record(std::string& out, uint8_t tag, const std::string& payload) {
  if (payload.size() > 0xFFFF) {
    std::cerr << "record too large for the container: " << payload.size() << " bytes\n";
    std::exit(1);
  }
  out.push_back(static_cast<char>(tag));
  out.push_back(static_cast<char>(payload.size() & 0xFF));
  out.push_back(static_cast<char>(payload.size() >> 8));
  out += payload;
}

struct SeedSpec {
  std::string name;
  KeyDtype dtype;
  ShuffleMode shuffle;
  int32_t heads, head_dim;
  std::vector<int> segment_tokens;
  int n_states;  // write_state calls (generation = n_states)
  int zstd_level;
};

// Builds the store with StoreWriter in `dir` and returns the packed container (without the flags byte).
std::string build(const SeedSpec& spec, const fs::path& dir) {
  fs::remove_all(dir);
  StoreMeta meta;
  meta.model_fingerprint = "sha256:fuzz-" + spec.name;
  meta.model_name = "fuzz-model";
  meta.retrieval_layer = 3;
  meta.n_kv_heads = spec.heads;
  meta.head_dim = spec.head_dim;
  meta.dtype = spec.dtype;
  meta.config = json{{"k", 4}, {"chunk", 64}};
  WriteOptions opt;
  opt.zstd_level = spec.zstd_level;
  opt.shuffle = spec.shuffle;
  opt.fsync = false;
  auto w = StoreWriter::create(dir, meta, opt);
  if (!w) {
    std::cerr << spec.name << ": " << w.error().what() << "\n";
    std::exit(1);
  }
  const int width = spec.heads * spec.head_dim;
  int64_t pos = 0;
  for (size_t s = 0; s < spec.segment_tokens.size(); ++s) {
    const int n = spec.segment_tokens[s];
    std::vector<float> keys(static_cast<size_t>(n) * width);
    std::vector<int32_t> toks(static_cast<size_t>(n));
    for (int t = 0; t < n; ++t) {
      toks[t] = static_cast<int32_t>((pos + t) * 7919 % 32000);
      for (int c = 0; c < width; ++c) {
        // Smooth in position per channel (what real keys look like), a few large values, one beyond f16.
        float v = std::sin(0.05f * static_cast<float>(pos + t) + 0.3f * c) * (1.0f + c % 5);
        if ((t + c) % 97 == 0) v *= 300.0f;
        if (s == 0 && t == 0 && c == 0) v = 1e6f;
        keys[static_cast<size_t>(t) * width + c] = v;
      }
    }
    auto r = w->append(keys, toks, pos);
    if (!r) {
      std::cerr << spec.name << ": " << r.error().what() << "\n";
      std::exit(1);
    }
    pos += n;
  }
  if (!spec.segment_tokens.empty()) {
    auto r = w->set_notes(json{{"source", "store_fuzz_seeds"}, {"segments", spec.segment_tokens.size()}});
    if (!r) std::exit(1);
  }
  for (int g = 0; g < spec.n_states; ++g) {
    std::vector<uint8_t> blob(static_cast<size_t>(40 + 13 * g));
    for (size_t k = 0; k < blob.size(); ++k) blob[k] = static_cast<uint8_t>(k * 31 + g);
    auto r = w->write_state(blob);
    if (!r) std::exit(1);
  }
  auto rd = StoreReader::open(dir);
  if (!rd) {
    std::cerr << spec.name << ": " << rd.error().what() << "\n";
    std::exit(1);
  }
  std::string out;
  add_record(out, 0, read_all(dir / kManifestFile));
  for (size_t i = 0; i < rd->segments().size(); ++i) {
    add_record(out, static_cast<uint8_t>(2 + i), read_all(dir / rd->segments()[i].file));
  }
  if (rd->has_state()) add_record(out, 1, read_all(dir / rd->state_info()->file));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: store_fuzz_seeds <corpus-dir> [dictionary-file]\n";
    return 2;
  }
  const fs::path out_dir = argv[1];
  const fs::path work = fs::temp_directory_path() / ("ilre-store-fuzz-seeds-" + std::to_string(::getpid()));
  const std::vector<SeedSpec> specs = {
      {"f16-auto-3seg-state", KeyDtype::f16, ShuffleMode::automatic, 2, 8, {24, 40, 9}, 1, 3},
      {"bf16-none-2seg", KeyDtype::bf16, ShuffleMode::none, 1, 16, {32, 17}, 0, 1},
      {"f16-bytes-1seg-state2", KeyDtype::f16, ShuffleMode::bytes, 4, 4, {50}, 2, 5},
      {"bf16-channel-4seg-state", KeyDtype::bf16, ShuffleMode::channel_bytes, 2, 4, {8, 1, 20, 3}, 1, 3},
      {"f16-channel-wide", KeyDtype::f16, ShuffleMode::channel_bytes, 8, 8, {12, 6}, 0, 19},
      {"bf16-auto-1tok", KeyDtype::bf16, ShuffleMode::automatic, 1, 2, {1}, 1, -1},
      {"empty", KeyDtype::f16, ShuffleMode::automatic, 2, 8, {}, 0, 3},
      {"empty-state", KeyDtype::bf16, ShuffleMode::none, 2, 8, {}, 1, 3},
  };
  // Each store as read (flags 0), with the reads in f16 / bf16 first, and with every fix-up on.
  const std::vector<std::pair<const char*, uint8_t>> variants = {
      {"plain", 0x00}, {"fix-all", 0x07}, {"fix-crc-f16", 0x09}, {"fix-derived-bf16", 0x13}};
  int count = 0;
  for (const SeedSpec& spec : specs) {
    const std::string packed = build(spec, work);
    for (const auto& [vname, flags] : variants) {
      const std::string input = std::string(1, static_cast<char>(flags)) + packed;
      // Each seed must be a valid store as the harness sees it.
      TempStore& ts = temp_store();
      ts.clear();
      Container c = unpack(reinterpret_cast<const uint8_t*>(input.data()), input.size());
      json j = json::parse(*c.manifest);
      if (c.flags) {
        fix_up(c, j);
        *c.manifest = j.dump(1) + "\n";
      }
      ts.write(std::string(kManifestFile), *c.manifest);
      if (c.state) ts.write(state_name_of(j), *c.state);
      for (const auto& [i, file] : c.segments) ts.write(segment_file_name(i), file);
      auto r = StoreReader::open(ts.dir);
      if (!r || !r->verify()) {
        std::cerr << spec.name << "/" << vname << ": not a valid store: "
                  << (r ? r->verify().error().what() : r.error().what()) << "\n";
        return 1;
      }
      exercise(*r, static_cast<KeyFormat>(((c.flags >> 3) & 3) % 3));
      const fs::path p = out_dir / (spec.name + "." + vname + ".store");
      std::ofstream f(p, std::ios::binary | std::ios::trunc);
      f.write(input.data(), static_cast<std::streamsize>(input.size()));
      if (!f) {
        std::cerr << "cannot write " << p << "\n";
        return 1;
      }
      std::cout << p.string() << " (" << input.size() << " bytes)\n";
      ++count;
    }
  }
  fs::remove_all(work);
  if (argc >= 3) {
    std::ofstream dict(argv[2], std::ios::trunc);
    dict << "magic=\"ILREKSEG\"\n"
            "crc=\"crc32c:\"\n"
            "k_fmt=\"\\\"format_version\\\"\"\n"
            "k_ntok=\"\\\"n_tokens\\\"\"\n"
            "k_first=\"\\\"first_pos\\\"\"\n"
            "k_raw=\"\\\"raw_key_bytes\\\"\"\n"
            "k_stored=\"\\\"stored_bytes\\\"\"\n"
            "k_skey=\"\\\"stored_key_bytes\\\"\"\n"
            "k_stok=\"\\\"stored_token_bytes\\\"\"\n"
            "k_heads=\"\\\"n_kv_heads\\\"\"\n"
            "k_hdim=\"\\\"head_dim\\\"\"\n"
            "k_width=\"\\\"key_width\\\"\"\n"
            "k_state=\"\\\"state\\\"\"\n"
            "k_gen=\"\\\"state_generation\\\"\"\n"
            "v_f16=\"\\\"f16\\\"\"\n"
            "v_bf16=\"\\\"bf16\\\"\"\n"
            "v_none=\"\\\"none\\\"\"\n"
            "v_bytes=\"\\\"bytes\\\"\"\n"
            "v_chan=\"\\\"channel_bytes\\\"\"\n"
            "v_null=\"null\"\n"
            "v_big=\"9223372036854775807\"\n"
            "v_u64=\"18446744073709551615\"\n"
            "v_2p31=\"2147483648\"\n"
            "v_2p32=\"4294967296\"\n"
            "v_neg=\"-1\"\n"
            "seg1=\"segments/seg-000001.ilk\"\n"
            "state1=\"state-000001.bin\"\n"
            "zstd_magic=\"\\x28\\xb5\\x2f\\xfd\"\n"
            "i64_max=\"\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x7f\"\n"
            "u32_max=\"\\xff\\xff\\xff\\xff\"\n";
    std::cout << argv[2] << "\n";
  }
  std::cout << count << " seeds\n";
  return 0;
}

#endif
