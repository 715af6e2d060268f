// Key-store compression and read-back speed, on synthetic keys with the statistics of post-RoPE keys.
//
//   bench_store [--tokens=32768] [--widths=256,32] [--head-dim=256] [--segment=4096] [--levels=1,3,9]
//               [--dir=/tmp] [--min-time=0.3]
//
// Keys: per channel an AR(1) process in position (rho in [0.90, 0.999]: smooth), scale s_c log-uniform over
// two orders of magnitude (0.1 .. 10), values ~N(0, s_c); then NeoX RoPE (theta 10000) over each head of
// `head_dim` channels, as Gemma/Llama do before the keys are cached. Real keys will differ (outlier
// channels, k-norm); the lead measures those with the model.
//
// Table 1: stored bytes per token vs raw, per dtype x shuffle x zstd level, with compression speed.
// Table 2: read-back through StoreReader (pread + CRC32C + zstd + unshuffle + F16/BF16 -> F32, from the
// page cache) in MB/s of F32 keys produced, against a memcpy of the same F32 volume in the same run, and
// the time split between the steps. All times are CPU time of the benchmark thread (best of repeats).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <time.h>
#include <unistd.h>

#include "model/kernels/quant.h"
#include "storage/checksum.h"
#include "storage/segment_codec.h"
#include "storage/store_reader.h"
#include "storage/store_writer.h"
#include "args.h"

namespace {

namespace st = ilre::storage;
namespace fs = std::filesystem;

struct Options {
  int64_t tokens = 32768;
  std::vector<int64_t> widths = {256, 32};
  int64_t head_dim = 0;  // 0: min(width, 256) for the default widths (Gemma 3 270M: 1 x 256; stories260K: 4 x 8)
  int64_t segment = 4096;
  std::vector<int64_t> levels = {1, 3, 9};
  std::string dir;
  double min_time = 0.3;
};

using ilre::bench::parse_list;

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* k) { return a.substr(std::strlen(k)); };
    if (a.rfind("--tokens=", 0) == 0) o.tokens = std::stoll(val("--tokens="));
    else if (a.rfind("--widths=", 0) == 0) o.widths = parse_list(val("--widths="));
    else if (a.rfind("--head-dim=", 0) == 0) o.head_dim = std::stoll(val("--head-dim="));
    else if (a.rfind("--segment=", 0) == 0) o.segment = std::stoll(val("--segment="));
    else if (a.rfind("--levels=", 0) == 0) o.levels = parse_list(val("--levels="));
    else if (a.rfind("--dir=", 0) == 0) o.dir = val("--dir=");
    else if (a.rfind("--min-time=", 0) == 0) o.min_time = std::stod(val("--min-time="));
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.dir.empty()) o.dir = fs::temp_directory_path().string();
  return o;
}

// CPU time of this thread (user + system), so that other load on the machine does not count; the reads
// come from the page cache, so there is no I/O wait to miss.
double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double best_seconds(const std::function<void()>& fn, double min_time) {
  fn();
  double best = 1e30, total = 0.0;
  for (int rep = 0; rep < 2 || total < min_time; ++rep) {
    const double t0 = cpu_now();
    fn();
    const double s = cpu_now() - t0;
    best = std::min(best, s);
    total += s;
    if (rep > 1000) break;
  }
  return best;
}

// F32 [n, width]: see the file comment.
std::vector<float> synth_keys(int64_t n, int64_t width, int64_t head_dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> z(0.0, 1.0);
  std::vector<double> scale(static_cast<size_t>(width)), rho(static_cast<size_t>(width)), x(static_cast<size_t>(width));
  for (int64_t c = 0; c < width; ++c) {
    scale[c] = std::pow(10.0, -1.0 + 2.0 * u(rng));
    rho[c] = 0.90 + 0.099 * u(rng);
    x[c] = z(rng);
  }
  std::vector<float> k(static_cast<size_t>(n * width));
  std::vector<double> pre(static_cast<size_t>(width));
  const int64_t half = head_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < width; ++c) {
      x[c] = rho[c] * x[c] + std::sqrt(1.0 - rho[c] * rho[c]) * z(rng);
      pre[c] = scale[c] * x[c];
    }
    for (int64_t h0 = 0; h0 < width; h0 += head_dim) {
      for (int64_t i = 0; i < half; ++i) {
        const double theta = static_cast<double>(t) * std::pow(10000.0, -2.0 * i / head_dim);
        const double a = pre[h0 + i], b = pre[h0 + i + half];
        k[t * width + h0 + i] = static_cast<float>(a * std::cos(theta) - b * std::sin(theta));
        k[t * width + h0 + i + half] = static_cast<float>(a * std::sin(theta) + b * std::cos(theta));
      }
    }
  }
  return k;
}

// Zipf-like token ids over a 262144 vocabulary.
std::vector<int32_t> synth_tokens(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& v : t) v = static_cast<int32_t>(std::min(262143.0, std::exp(u(rng) * std::log(262144.0))));
  return t;
}

void compression_table(const Options& o, int64_t width, int64_t head_dim, const std::vector<float>& keys,
                       const std::vector<int32_t>& tokens) {
  std::printf("\n== compression: %lld tokens x width %lld (head_dim %lld), segments of %lld tokens ==\n",
              static_cast<long long>(o.tokens), static_cast<long long>(width), static_cast<long long>(head_dim),
              static_cast<long long>(o.segment));
  std::printf("%-5s %-13s %5s | %10s %10s %8s | %11s %10s | %s\n", "dtype", "shuffle", "level", "raw B/tok",
              "key B/tok", "ratio", "+tok B/tok", "MB/s in", "chosen layouts (none/bytes/channel)");
  const st::ShuffleMode modes[] = {st::ShuffleMode::none, st::ShuffleMode::bytes, st::ShuffleMode::channel_bytes,
                                   st::ShuffleMode::automatic};
  for (st::KeyDtype dtype : {st::KeyDtype::f16, st::KeyDtype::bf16}) {
    std::vector<uint16_t> k16(keys.size());
    st::keys_to_16(dtype, keys.data(), k16.data(), keys.size());
    for (int64_t level : o.levels) {
      for (st::ShuffleMode mode : modes) {
        st::ZstdCompressor zc(static_cast<int>(level));
        st::EncodedSegment enc;
        std::vector<uint8_t> scratch;
        uint64_t key_bytes = 0, tok_bytes = 0;
        int chosen[3] = {0, 0, 0};
        const double t0 = cpu_now();
        for (int64_t first = 0; first < o.tokens; first += o.segment) {
          const int64_t n = std::min(o.segment, o.tokens - first);
          auto r = st::encode_segment(zc, mode, dtype, first,
                                      std::span<const uint16_t>(k16).subspan(first * width, n * width),
                                      std::span<const int32_t>(tokens).subspan(first, n), static_cast<int32_t>(width),
                                      enc, scratch);
          if (!r) {
            std::fprintf(stderr, "encode: %s\n", r.error().what().c_str());
            std::exit(1);
          }
          key_bytes += enc.key_frame.size();
          tok_bytes += enc.token_frame.size();
          ++chosen[static_cast<int>(enc.header.shuffle)];
        }
        const double secs = cpu_now() - t0;
        const double raw_per_tok = 2.0 * width;
        const double key_per_tok = static_cast<double>(key_bytes) / o.tokens;
        const double all_per_tok = static_cast<double>(key_bytes + tok_bytes + 64 * ((o.tokens + o.segment - 1) / o.segment)) / o.tokens;
        std::printf("%-5s %-13s %5lld | %10.1f %10.1f %7.3fx | %11.1f %10.0f | %d/%d/%d\n",
                    std::string(st::key_dtype_name(dtype)).c_str(), std::string(st::shuffle_mode_name(mode)).c_str(),
                    static_cast<long long>(level), raw_per_tok, key_per_tok, raw_per_tok / key_per_tok, all_per_tok,
                    2.0 * keys.size() / secs / 1e6, chosen[0], chosen[1], chosen[2]);
      }
    }
  }
}

void read_table(const Options& o, int64_t width, int64_t head_dim, const std::vector<float>& keys,
                const std::vector<int32_t>& tokens) {
  const fs::path dir = fs::path(o.dir) / ("ilre-bench-store-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  st::StoreMeta meta;
  meta.model_fingerprint = "bench";
  meta.model_name = "synthetic";
  meta.retrieval_layer = 0;
  meta.n_kv_heads = static_cast<int32_t>(width / head_dim);
  meta.head_dim = static_cast<int32_t>(head_dim);
  meta.dtype = st::KeyDtype::f16;
  st::WriteOptions wo;
  wo.fsync = false;
  double write_s = 0;
  {
    auto w = st::StoreWriter::create(dir, meta, wo);
    if (!w) {
      std::fprintf(stderr, "create: %s\n", w.error().what().c_str());
      std::exit(1);
    }
    const double t0 = cpu_now();
    for (int64_t first = 0; first < o.tokens; first += o.segment) {
      const int64_t n = std::min(o.segment, o.tokens - first);
      auto r = w->append(std::span<const float>(keys).subspan(first * width, n * width),
                         std::span<const int32_t>(tokens).subspan(first, n), first);
      if (!r) {
        std::fprintf(stderr, "append: %s\n", r.error().what().c_str());
        std::exit(1);
      }
    }
    write_s = cpu_now() - t0;
  }
  auto r = st::StoreReader::open(dir);
  if (!r) {
    std::fprintf(stderr, "open: %s\n", r.error().what().c_str());
    std::exit(1);
  }
  const st::StoreStats stats = r->stats();
  const double f32_mb = 4.0 * keys.size() / 1e6;
  const double f16_mb = 2.0 * keys.size() / 1e6;

  st::Segment seg;
  auto read_all = [&](st::KeyFormat f) {
    for (size_t i = 0; i < r->segments().size(); ++i) {
      if (auto e = r->read_segment_into(i, f, seg); !e) {
        std::fprintf(stderr, "read: %s\n", e.error().what().c_str());
        std::exit(1);
      }
    }
  };
  const double t_f32 = best_seconds([&] { read_all(st::KeyFormat::f32); }, o.min_time);
  const double t_f16 = best_seconds([&] { read_all(st::KeyFormat::f16); }, o.min_time);

  // Baseline: memcpy of the same F32 volume, segment by segment into a reused buffer.
  std::vector<float> dst(static_cast<size_t>(o.segment * width));
  const double t_memcpy = best_seconds(
      [&] {
        for (int64_t first = 0; first < o.tokens; first += o.segment) {
          const int64_t n = std::min(o.segment, o.tokens - first);
          std::memcpy(dst.data(), keys.data() + first * width, static_cast<size_t>(n * width) * 4);
          asm volatile("" : : "r"(dst.data()) : "memory");
        }
      },
      o.min_time);

  // Step split on one in-memory segment.
  const int64_t n = std::min(o.segment, o.tokens);
  std::vector<uint16_t> k16(static_cast<size_t>(n * width));
  st::keys_to_16(st::KeyDtype::f16, keys.data(), k16.data(), k16.size());
  st::ZstdCompressor zc(3);
  st::EncodedSegment enc;
  std::vector<uint8_t> scratch, planes(k16.size() * 2);
  (void)st::encode_segment(zc, st::ShuffleMode::automatic, st::KeyDtype::f16, 0, k16,
                           std::span<const int32_t>(tokens).first(n), static_cast<int32_t>(width), enc, scratch);
  std::vector<float> out(k16.size());
  const double seg_f32_mb = 4.0 * k16.size() / 1e6;
  const double t_crc = best_seconds([&] { asm volatile("" : : "r"(st::crc32c(enc.key_frame)) : "memory"); }, o.min_time);
  const double t_zstd = best_seconds([&] { (void)st::zstd_decompress(enc.key_frame, planes, "bench", "key"); }, o.min_time);
  const double t_conv = best_seconds(
      [&] { st::unshuffle_keys_f32(enc.header.shuffle, st::KeyDtype::f16, planes.data(), n, static_cast<int32_t>(width), out.data()); },
      o.min_time);

  std::printf("\n== read-back: f16 store, auto shuffle, zstd 3, %zu segments, %.1f MB of F32 keys ==\n",
              r->segments().size(), f32_mb);
  std::printf("stored %.1f B/token (keys %.3fx smaller than raw f16); write (no fsync) %.0f MB/s of raw f16\n",
              static_cast<double>(stats.stored_bytes) / o.tokens, stats.key_compression_ratio(), f16_mb / write_s);
  std::printf("%-44s %10s %10s %12s\n", "path", "MB/s F32", "MB/s f16", "Mtokens/s");
  auto row = [&](const char* name, double secs) {
    std::printf("%-44s %10.0f %10.0f %12.2f\n", name, f32_mb / secs, f16_mb / secs, o.tokens / secs / 1e6);
  };
  row("read_segment_into(f32)  [pread+crc+zstd+conv]", t_f32);
  row("read_segment_into(f16)  [pread+crc+zstd+unshuf]", t_f16);
  row("baseline: memcpy of the F32 keys", t_memcpy);
  std::printf("step split on one segment (%lld tokens, layout %s), MB/s of F32 output: crc32c %.0f, zstd %.0f, "
              "unshuffle+convert %.0f\n",
              static_cast<long long>(n), std::string(st::shuffle_name(enc.header.shuffle)).c_str(),
              seg_f32_mb / t_crc, seg_f32_mb / t_zstd, seg_f32_mb / t_conv);
  fs::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  for (int64_t width : o.widths) {
    const int64_t head_dim = o.head_dim > 0 ? o.head_dim : (width >= 256 ? 256 : 8);
    if (width % head_dim != 0) {
      std::fprintf(stderr, "width %lld is not a multiple of head_dim %lld\n", static_cast<long long>(width),
                   static_cast<long long>(head_dim));
      return 2;
    }
    const auto keys = synth_keys(o.tokens, width, head_dim, 1234);
    const auto tokens = synth_tokens(o.tokens, 99);
    compression_table(o, width, head_dim, keys, tokens);
    read_table(o, width, head_dim, keys, tokens);
  }
  return 0;
}
