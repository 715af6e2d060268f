// Writing and reading stores: round trips, reopen + append, tokens_at, state, notes, concurrency.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "store_test_util.h"

namespace ilre::storage::test {
namespace {

WriteOptions fast() {
  WriteOptions o;
  o.fsync = false;  // durability is covered by the crash tests; here only content matters
  return o;
}

// Appends segments of the given sizes (positions continue) and returns the keys/tokens written.
void append_segments(StoreWriter& w, const std::vector<int64_t>& sizes, std::vector<float>* all_keys = nullptr,
                     std::vector<int32_t>* all_tokens = nullptr) {
  const int32_t width = w.meta().key_width();
  for (int64_t n : sizes) {
    const int64_t first = w.n_tokens();
    auto k = make_keys(first, n, width, w.meta().dtype);
    auto t = make_tokens(first, n);
    auto st = w.append(k, t, first);
    ASSERT_TRUE(st) << st.error().what();
    EXPECT_EQ(st->segment.first_pos, first);
    EXPECT_EQ(st->segment.n_tokens, n);
    EXPECT_EQ(st->segment.raw_key_bytes, static_cast<uint64_t>(n * width * 2));
    EXPECT_EQ(st->n_nonfinite, 0);
    if (all_keys) all_keys->insert(all_keys->end(), k.begin(), k.end());
    if (all_tokens) all_tokens->insert(all_tokens->end(), t.begin(), t.end());
  }
}

TEST(Store, RoundTripSeveralSegmentsExact) {
  for (KeyDtype dtype : {KeyDtype::f16, KeyDtype::bf16}) {
    const fs::path dir = store_dir("roundtrip");
    std::vector<float> keys;
    std::vector<int32_t> tokens;
    {
      auto w = StoreWriter::create(dir, tiny_meta(dtype), fast());
      ASSERT_TRUE(w) << w.error().what();
      append_segments(*w, {100, 1, 257, 64}, &keys, &tokens);
      EXPECT_EQ(w->n_tokens(), 422);
    }
    auto r = StoreReader::open(dir);
    ASSERT_TRUE(r) << r.error().what();
    EXPECT_EQ(r->n_tokens(), 422);
    ASSERT_EQ(r->segments().size(), 4u);
    EXPECT_EQ(r->meta().model_fingerprint, "sha256:tiny-model-0001");
    EXPECT_EQ(r->meta().model_name, "tiny-test-model");
    EXPECT_EQ(r->meta().retrieval_layer, 1);
    EXPECT_EQ(r->meta().key_width(), 32);
    EXPECT_EQ(r->meta().dtype, dtype);
    EXPECT_EQ(r->meta().config, tiny_meta().config);
    EXPECT_FALSE(r->created_at().empty());
    const int32_t width = 32;
    Segment seg;
    size_t off = 0;
    for (size_t i = 0; i < r->segments().size(); ++i) {
      ASSERT_TRUE(r->read_segment_into(i, KeyFormat::f32, seg));
      EXPECT_EQ(seg.first_pos, static_cast<int64_t>(off));
      ASSERT_EQ(seg.keys_f32.size(), static_cast<size_t>(seg.n_tokens * width));
      // Keys were made representable in the dtype, so they come back bit-exact.
      EXPECT_EQ(std::memcmp(seg.keys_f32.data(), keys.data() + off * width, seg.keys_f32.size() * 4), 0) << i;
      EXPECT_EQ(seg.tokens, std::vector<int32_t>(tokens.begin() + off, tokens.begin() + off + seg.n_tokens));
      // Raw 16-bit form: same bits as converting ourselves.
      auto raw = r->read_segment(i, dtype == KeyDtype::f16 ? KeyFormat::f16 : KeyFormat::bf16);
      ASSERT_TRUE(raw);
      for (size_t k = 0; k < raw->keys_16.size(); ++k) {
        const float f = keys[off * width + k];
        ASSERT_EQ(raw->keys_16[k], dtype == KeyDtype::f16 ? model::fp32_to_fp16(f) : model::fp32_to_bf16(f));
      }
      off += static_cast<size_t>(seg.n_tokens);
    }
    EXPECT_TRUE(r->verify());
  }
}

// A reader that takes either layout gets channel-shuffled segments channel-major (no transpose), the
// others token-major; both hold the same values.
TEST(Store, ChannelMajorReadOfEveryShuffle) {
  for (ShuffleMode mode : {ShuffleMode::channel_bytes, ShuffleMode::bytes, ShuffleMode::none}) {
    for (KeyDtype dtype : {KeyDtype::f16, KeyDtype::bf16}) {
      const fs::path dir = store_dir(std::string("layout-") + std::string(shuffle_mode_name(mode)) + "-" +
                                     std::string(key_dtype_name(dtype)));
      std::vector<float> keys;
      WriteOptions o = fast();
      o.shuffle = mode;
      {
        auto w = StoreWriter::create(dir, tiny_meta(dtype), o);
        ASSERT_TRUE(w) << w.error().what();
        append_segments(*w, {100, 1, 4099}, &keys);
      }
      auto r = StoreReader::open(dir);
      ASSERT_TRUE(r);
      const int32_t width = r->meta().key_width();
      Segment seg;
      size_t off = 0;
      for (size_t i = 0; i < r->segments().size(); ++i) {
        ASSERT_TRUE(r->read_segment_into(i, KeyFormat::f32, seg, KeyLayout::channel_major));
        const bool channel = mode == ShuffleMode::channel_bytes;
        EXPECT_EQ(seg.layout, channel ? KeyLayout::channel_major : KeyLayout::token_major);
        const auto n = static_cast<size_t>(seg.n_tokens);
        for (size_t t = 0; t < n; ++t) {
          for (size_t c = 0; c < static_cast<size_t>(width); ++c) {
            const float got = channel ? seg.keys_f32[c * n + t] : seg.keys_f32[t * width + c];
            ASSERT_EQ(got, keys[(off + t) * width + c]) << "segment " << i << " token " << t << " channel " << c;
          }
        }
        // The default read of the same reader and buffer is token-major again.
        ASSERT_TRUE(r->read_segment_into(i, KeyFormat::f32, seg));
        EXPECT_EQ(seg.layout, KeyLayout::token_major);
        EXPECT_EQ(std::memcmp(seg.keys_f32.data(), keys.data() + off * width, seg.keys_f32.size() * 4), 0);
        off += n;
      }
    }
  }
}

TEST(Store, KeysRoundToTheDtype) {
  const fs::path dir = store_dir("rounding");
  auto w = StoreWriter::create(dir, tiny_meta(KeyDtype::bf16, 1, 8), fast());
  ASSERT_TRUE(w);
  std::vector<float> k{1.0f, 1.001f, -3.14159f, 1e-8f, 123456.7f, 0.1f, -0.0f, 7e30f};
  ASSERT_TRUE(w->append(k, std::vector<int32_t>{5}, 0));
  auto r = StoreReader::open(dir);
  auto seg = r->read_segment(0, KeyFormat::f32);
  ASSERT_TRUE(seg);
  for (size_t i = 0; i < k.size(); ++i) {
    EXPECT_NEAR(seg->keys_f32[i], k[i], std::abs(k[i]) * (1.0 / 256)) << i;  // bf16: 8 significant bits
    EXPECT_EQ(seg->keys_f32[i], model::bf16_to_fp32(model::fp32_to_bf16(k[i])));
  }
  // Cross-dtype read: bf16 store -> f16 values.
  auto as16 = r->read_segment(0, KeyFormat::f16);
  ASSERT_TRUE(as16);
  EXPECT_EQ(as16->keys_16[0], 0x3C00);  // 1.0
}

TEST(Store, F16OverflowIsCountedNotHidden) {
  const fs::path dir = store_dir("overflow");
  auto w = StoreWriter::create(dir, tiny_meta(KeyDtype::f16, 1, 4), fast());
  ASSERT_TRUE(w);
  auto st = w->append(std::vector<float>{1.0f, 70000.0f, -1e6f, 2.0f}, std::vector<int32_t>{1}, 0);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->n_nonfinite, 2);
}

TEST(Store, ReopenAndAppendContinuesPositions) {
  const fs::path dir = store_dir("reopen");
  std::vector<float> keys;
  std::vector<int32_t> tokens;
  {
    auto w = StoreWriter::create(dir, tiny_meta(), fast());
    ASSERT_TRUE(w);
    append_segments(*w, {50, 70}, &keys, &tokens);
    // Positions must continue exactly.
    auto k = make_keys(0, 4, 32);
    auto t = make_tokens(0, 4);
    EXPECT_EQ(w->append(k, t, 119).error().code, errc::out_of_range);
    EXPECT_EQ(w->append(k, t, 121).error().code, errc::out_of_range);
    EXPECT_EQ(w->append(k, t, 0).error().code, errc::out_of_range);
    EXPECT_EQ(w->append(std::span(k).first(3), t, 120).error().code, errc::invalid_argument);
    EXPECT_EQ(w->append(std::span<const float>(), std::span<const int32_t>(), 120).error().code,
              errc::invalid_argument);
  }
  {
    auto w = StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1, fast());
    ASSERT_TRUE(w) << w.error().what();
    EXPECT_EQ(w->n_tokens(), 120);
    append_segments(*w, {30}, &keys, &tokens);
    // 16-bit input, in the store dtype and in the other one.
    const int64_t first = w->n_tokens();
    auto k = make_keys(first, 10, 32);
    std::vector<uint16_t> k16(k.size());
    for (size_t i = 0; i < k.size(); ++i) k16[i] = model::fp32_to_fp16(k[i]);
    auto t = make_tokens(first, 10);
    ASSERT_TRUE(w->append(k16, KeyDtype::f16, t, first));
    keys.insert(keys.end(), k.begin(), k.end());
    tokens.insert(tokens.end(), t.begin(), t.end());
  }
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->n_tokens(), 160);
  ASSERT_EQ(r->segments().size(), 4u);
  int64_t next = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r->segments()[i].first_pos, next);
    next = r->segments()[i].end_pos();
    auto seg = r->read_segment(i, KeyFormat::f32);
    ASSERT_TRUE(seg);
    EXPECT_EQ(std::memcmp(seg->keys_f32.data(), keys.data() + seg->first_pos * 32, seg->keys_f32.size() * 4), 0);
  }
  std::vector<int64_t> all(160);
  for (int64_t i = 0; i < 160; ++i) all[static_cast<size_t>(i)] = i;
  EXPECT_EQ(*r->tokens_at(all), tokens);
}

TEST(Store, EmptyStoreOpensFine) {
  const fs::path dir = store_dir("empty");
  ASSERT_TRUE(StoreWriter::create(dir, tiny_meta(), fast()));
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(r->n_tokens(), 0);
  EXPECT_TRUE(r->segments().empty());
  EXPECT_FALSE(r->has_state());
  EXPECT_EQ(r->state().error().code, errc::invalid_argument);
  EXPECT_TRUE(r->verify());
  EXPECT_TRUE(r->tokens_at({})->empty());
  EXPECT_EQ(r->read_segment(0, KeyFormat::f32).error().code, errc::out_of_range);
  EXPECT_EQ(r->stats().key_compression_ratio(), 0.0);
  auto w = StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1, fast());
  ASSERT_TRUE(w) << w.error().what();
  EXPECT_EQ(w->n_tokens(), 0);
}

TEST(Store, CreateRefusesNonEmptyDirAndBadMeta) {
  const fs::path dir = store_dir("create");
  fs::create_directories(dir);
  write_text(dir / "something", "x");
  EXPECT_EQ(StoreWriter::create(dir, tiny_meta(), fast()).error().code, errc::invalid_argument);
  const fs::path empty_dir = store_dir("create-empty");
  fs::create_directories(empty_dir);
  EXPECT_TRUE(StoreWriter::create(empty_dir, tiny_meta(), fast()));
  StoreMeta bad = tiny_meta();
  bad.model_fingerprint.clear();
  EXPECT_EQ(StoreWriter::create(store_dir("bad1"), bad, fast()).error().code, errc::invalid_argument);
  bad = tiny_meta();
  bad.head_dim = 0;
  EXPECT_EQ(StoreWriter::create(store_dir("bad2"), bad, fast()).error().code, errc::invalid_argument);
  bad = tiny_meta();
  bad.model_name = "bad \xff utf8";
  EXPECT_EQ(StoreWriter::create(store_dir("bad4"), bad, fast()).error().code, errc::invalid_argument);
  WriteOptions o = fast();
  o.zstd_level = 99;
  EXPECT_EQ(StoreWriter::create(store_dir("bad3"), tiny_meta(), o).error().code, errc::invalid_argument);
  EXPECT_EQ(StoreReader::open(store_dir("nothing")).error().code, errc::io_failed);
}

TEST(Store, ModelMismatchOnOpenAppend) {
  const fs::path dir = store_dir("mismatch");
  ASSERT_TRUE(StoreWriter::create(dir, tiny_meta(), fast()));
  auto w = StoreWriter::open_append(dir, "sha256:other-model", 1, fast());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, errc::model_mismatch);
  EXPECT_NE(w.error().message.find("sha256:tiny-model-0001"), std::string::npos) << w.error().message;
  EXPECT_NE(w.error().message.find("sha256:other-model"), std::string::npos) << w.error().message;
  auto w2 = StoreWriter::open_append(dir, "sha256:tiny-model-0001", 2, fast());
  ASSERT_FALSE(w2);
  EXPECT_EQ(w2.error().code, errc::model_mismatch);
  EXPECT_NE(w2.error().message.find("l_R=1"), std::string::npos);
  EXPECT_NE(w2.error().message.find("l_R=2"), std::string::npos);
  auto r = StoreReader::open(dir);
  EXPECT_TRUE(r->check_model("sha256:tiny-model-0001", 1));
  EXPECT_EQ(r->check_model("sha256:tiny-model-0001", 3).error().code, errc::model_mismatch);
}

TEST(Store, OneWriterAtATime) {
  const fs::path dir = store_dir("lock");
  auto w = StoreWriter::create(dir, tiny_meta(), fast());
  ASSERT_TRUE(w);
  auto w2 = StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1, fast());
  ASSERT_FALSE(w2);
  EXPECT_EQ(w2.error().code, errc::io_failed);
  EXPECT_NE(w2.error().message.find("already open for writing"), std::string::npos);
  *w = std::move(*StoreWriter::create(store_dir("lock2"), tiny_meta(), fast()));  // releases the first lock
  EXPECT_TRUE(StoreWriter::open_append(dir, "sha256:tiny-model-0001", 1, fast()));
}

TEST(Store, TokensAtAcrossSegmentBoundaries) {
  const fs::path dir = store_dir("tokens-at");
  auto w = StoreWriter::create(dir, tiny_meta(), fast());
  ASSERT_TRUE(w);
  append_segments(*w, {10, 10, 5, 20});
  auto r = StoreReader::open(dir);
  ASSERT_TRUE(r);
  const std::vector<int64_t> pos{0, 9, 10, 10, 19, 20, 24, 25, 44};
  auto got = r->tokens_at(pos);
  ASSERT_TRUE(got) << got.error().what();
  std::vector<int32_t> want;
  for (int64_t p : pos) want.push_back(make_tokens(p, 1)[0]);
  EXPECT_EQ(*got, want);
  EXPECT_EQ(*r->segment_of(0), 0u);
  EXPECT_EQ(*r->segment_of(19), 1u);
  EXPECT_EQ(*r->segment_of(20), 2u);
  EXPECT_EQ(*r->segment_of(44), 3u);
  EXPECT_FALSE(r->segment_of(45));
  EXPECT_FALSE(r->segment_of(-1));
  EXPECT_EQ(r->tokens_at(std::vector<int64_t>{3, 2}).error().code, errc::invalid_argument);
  EXPECT_EQ(r->tokens_at(std::vector<int64_t>{45}).error().code, errc::out_of_range);
  EXPECT_EQ(*r->segment_tokens(2), make_tokens(20, 5));
}

TEST(Store, TokensAtReadsOnlyTheTokenPart) {
  const fs::path dir = store_dir("tokens-only");
  auto w = StoreWriter::create(dir, tiny_meta(), fast());
  ASSERT_TRUE(w);
  append_segments(*w, {40, 40});
  auto r = StoreReader::open(dir);
  const SegmentInfo& s = r->segments()[1];
  // Damage a key byte of segment 1: tokens are still readable (their own checksum), keys are not.
  flip_byte(dir / s.file, s.stored_bytes - 20);
  EXPECT_EQ(*r->tokens_at(std::vector<int64_t>{45, 79}), (std::vector<int32_t>{make_tokens(45, 1)[0], make_tokens(79, 1)[0]}));
  EXPECT_EQ(r->read_segment(1, KeyFormat::f32).error().code, errc::checksum_mismatch);
}

TEST(Store, ShuffleChosenWhenSmallerAndAllLayoutsDecode) {
  const int32_t width = 64;
  const int64_t n = 512;
  auto keys = make_keys(0, n, width);
  auto tokens = make_tokens(0, n);
  std::vector<float> decoded[4];
  uint64_t sizes[4] = {};
  const ShuffleMode modes[4] = {ShuffleMode::automatic, ShuffleMode::none, ShuffleMode::bytes,
                                ShuffleMode::channel_bytes};
  for (int m = 0; m < 4; ++m) {
    const fs::path dir = store_dir("shuffle");
    WriteOptions o = fast();
    o.shuffle = modes[m];
    auto w = StoreWriter::create(dir, tiny_meta(KeyDtype::f16, 4, 16), o);
    ASSERT_TRUE(w);
    auto st = w->append(keys, tokens, 0);
    ASSERT_TRUE(st);
    sizes[m] = st->segment.stored_key_bytes;
    if (modes[m] == ShuffleMode::automatic) {
      // Every layout was tried and the smallest kept.
      const uint64_t* c = st->candidate_key_bytes;
      ASSERT_GT(c[0] * c[1] * c[2], 0u);
      const uint64_t best = std::min({c[0], c[1], c[2]});
      EXPECT_EQ(st->segment.stored_key_bytes, best);
      EXPECT_EQ(c[static_cast<int>(st->segment.shuffle)], best);
      // On smooth keys a byte shuffle beats the plain layout.
      EXPECT_NE(st->segment.shuffle, Shuffle::none);
      EXPECT_LT(best, c[0]);
    } else {
      EXPECT_EQ(static_cast<int>(st->segment.shuffle), static_cast<int>(modes[m]) - 1);
    }
    auto r = StoreReader::open(dir);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->segments()[0].shuffle, st->segment.shuffle);  // recorded in the manifest
    decoded[m] = r->read_segment(0, KeyFormat::f32)->keys_f32;
    EXPECT_EQ(decoded[m], keys) << shuffle_mode_name(modes[m]);
    EXPECT_EQ(r->read_segment(0, KeyFormat::f16)->keys_16.size(), keys.size());
  }
  EXPECT_EQ(sizes[0], std::min({sizes[1], sizes[2], sizes[3]}));
}

TEST(Store, StateBlobRoundTripAndReplacement) {
  const fs::path dir = store_dir("state");
  auto w = StoreWriter::create(dir, tiny_meta(), fast());
  ASSERT_TRUE(w);
  append_segments(*w, {16});
  std::vector<uint8_t> a(1000), b(37);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 31);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(200 - i);
  ASSERT_TRUE(w->write_state(a));
  {
    auto r = StoreReader::open(dir);
    ASSERT_TRUE(r->has_state());
    EXPECT_EQ(r->state_info()->generation, 1);
    EXPECT_EQ(*r->state(), a);
  }
  ASSERT_TRUE(w->write_state(b));
  auto r = StoreReader::open(dir);
  EXPECT_EQ(*r->state(), b);
  EXPECT_EQ(r->state_info()->file, "state-000002.bin");
  EXPECT_FALSE(fs::exists(dir / "state-000001.bin"));  // the replaced blob is gone
  EXPECT_EQ(r->stats().state_bytes, 37u);
  ASSERT_TRUE(w->write_state({}));  // an empty blob is a valid state
  EXPECT_TRUE(StoreReader::open(dir)->state()->empty());
  // A corrupted state blob is caught.
  ASSERT_TRUE(w->write_state(a));
  auto r2 = StoreReader::open(dir);
  flip_byte(dir / r2->state_info()->file, 500);
  EXPECT_EQ(r2->state().error().code, errc::checksum_mismatch);
}

TEST(Store, NotesAndStats) {
  const fs::path dir = store_dir("notes");
  auto w = StoreWriter::create(dir, tiny_meta(), fast());
  ASSERT_TRUE(w);
  append_segments(*w, {100, 100});
  ASSERT_TRUE(w->set_notes({{"prefill_seconds", 1.5}, {"doc", "a.txt"}}));
  EXPECT_EQ(w->set_notes(nlohmann::json::array()).error().code, errc::invalid_argument);
  auto r = StoreReader::open(dir);
  EXPECT_EQ(r->meta().notes["doc"], "a.txt");
  const StoreStats st = r->stats();
  EXPECT_EQ(st.n_segments, 2);
  EXPECT_EQ(st.n_tokens, 200);
  EXPECT_EQ(st.raw_key_bytes, 200u * 32 * 2);
  EXPECT_GT(st.key_compression_ratio(), 1.0);
  EXPECT_EQ(w->stats().stored_bytes, st.stored_bytes);
}

TEST(Store, ConcurrentReadersAndAWriter) {
  const fs::path dir = store_dir("concurrent");
  auto w = StoreWriter::create(dir, tiny_meta(), fast());
  ASSERT_TRUE(w);
  std::vector<float> keys;
  append_segments(*w, std::vector<int64_t>(12, 64), &keys);
  auto shared_reader = StoreReader::open(dir);
  ASSERT_TRUE(shared_reader);
  std::atomic<int> failures{0};
  auto work = [&](const StoreReader& r, int seed) {
    Segment seg;
    for (int rep = 0; rep < 20; ++rep) {
      const size_t i = static_cast<size_t>((rep * 7 + seed) % 12);
      if (!r.read_segment_into(i, KeyFormat::f32, seg) ||
          std::memcmp(seg.keys_f32.data(), keys.data() + seg.first_pos * 32, seg.keys_f32.size() * 4) != 0) {
        ++failures;
      }
      auto t = r.tokens_at(std::vector<int64_t>{static_cast<int64_t>(i) * 64 + 3});
      if (!t || (*t)[0] != make_tokens(static_cast<int64_t>(i) * 64 + 3, 1)[0]) ++failures;
    }
  };
  std::vector<std::thread> threads;
  for (int k = 0; k < 2; ++k) threads.emplace_back([&, k] { work(*shared_reader, k); });  // one reader, 2 threads
  for (int k = 0; k < 2; ++k) {
    threads.emplace_back([&, k] {  // own readers
      auto r = StoreReader::open(dir);
      if (!r) {
        ++failures;
        return;
      }
      work(*r, 5 + k);
    });
  }
  append_segments(*w, {64, 64});  // the writer keeps going meanwhile
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(StoreReader::open(dir)->segments().size(), 14u);
}

}  // namespace
}  // namespace ilre::storage::test
