// CRC32C vectors, byte shuffles and the segment header.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "storage/checksum.h"
#include "storage/segment_codec.h"

namespace ilre::storage {
namespace {

TEST(Crc32c, KnownVectors) {
  // RFC 3720 B.4 and the classic check value.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<uint8_t>(i);
    dec[i] = static_cast<uint8_t>(31 - i);
  }
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc), 0x46DD794Eu);
  EXPECT_EQ(crc32c(dec), 0x113FDB5Cu);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, HardwareMatchesPortableAndChains) {
  std::mt19937 rng(1);
  std::vector<uint8_t> buf(100003);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{4095}, buf.size()}) {
    EXPECT_EQ(crc32c(buf.data(), n), crc32c_portable(buf.data(), n)) << n;
  }
  const uint32_t whole = crc32c(buf);
  EXPECT_EQ(crc32c(buf.data() + 1000, buf.size() - 1000, crc32c(buf.data(), 1000)), whole);
  buf[5000] ^= 1;
  EXPECT_NE(crc32c(buf), whole);
}

TEST(Crc32c, StringForm) {
  uint32_t v = 0;
  EXPECT_EQ(checksum_to_string(0xE3069283u), "crc32c:e3069283");
  EXPECT_TRUE(checksum_from_string("crc32c:e3069283", &v));
  EXPECT_EQ(v, 0xE3069283u);
  EXPECT_FALSE(checksum_from_string("crc32c:E3069283", &v));
  EXPECT_FALSE(checksum_from_string("crc32:e3069283", &v));
  EXPECT_FALSE(checksum_from_string("crc32c:e306928", &v));
}

TEST(Shuffle, EveryLayoutRoundTrips) {
  std::mt19937 rng(3);
  for (int64_t n_tokens : {1, 5, 63, 64, 65, 300}) {
    for (int32_t width : {1, 3, 32, 256}) {
      std::vector<uint16_t> v(static_cast<size_t>(n_tokens * width));
      for (auto& x : v) x = static_cast<uint16_t>(rng());
      for (Shuffle s : {Shuffle::none, Shuffle::bytes, Shuffle::channel_bytes}) {
        std::vector<uint8_t> planes(v.size() * 2);
        shuffle_keys(s, v.data(), n_tokens, width, planes.data());
        std::vector<uint16_t> back(v.size());
        unshuffle_keys(s, planes.data(), n_tokens, width, back.data());
        EXPECT_EQ(back, v) << shuffle_name(s) << " " << n_tokens << "x" << width;
        for (KeyDtype d : {KeyDtype::f16, KeyDtype::bf16}) {
          std::vector<float> f(v.size()), ref(v.size());
          unshuffle_keys_f32(s, d, planes.data(), n_tokens, width, f.data());
          keys_from_16(d, v.data(), ref.data(), v.size());
          EXPECT_EQ(std::memcmp(f.data(), ref.data(), f.size() * 4), 0) << shuffle_name(s);
        }
      }
    }
  }
}

TEST(Shuffle, LayoutsAreWhatFormatMdSays) {
  // 2 tokens x 2 channels: values 0xA1B1 0xA2B2 / 0xA3B3 0xA4B4 (t0c0 t0c1 / t1c0 t1c1).
  const std::vector<uint16_t> v{0xA1B1, 0xA2B2, 0xA3B3, 0xA4B4};
  std::vector<uint8_t> p(8);
  shuffle_keys(Shuffle::bytes, v.data(), 2, 2, p.data());
  EXPECT_EQ(p, (std::vector<uint8_t>{0xB1, 0xB2, 0xB3, 0xB4, 0xA1, 0xA2, 0xA3, 0xA4}));
  shuffle_keys(Shuffle::channel_bytes, v.data(), 2, 2, p.data());
  EXPECT_EQ(p, (std::vector<uint8_t>{0xB1, 0xB3, 0xB2, 0xB4, 0xA1, 0xA3, 0xA2, 0xA4}));
}

TEST(SegmentHeader, RoundTripsAndRejectsDamage) {
  SegmentHeader h;
  h.first_pos = 123456789012;
  h.n_tokens = 4096;
  h.key_width = 256;
  h.dtype = KeyDtype::bf16;
  h.shuffle = Shuffle::channel_bytes;
  h.token_frame_bytes = 999;
  h.key_frame_bytes = 123456;
  uint8_t b[kSegmentHeaderBytes];
  encode_segment_header(h, b);
  auto d = decode_segment_header(b, "x.ilk");
  ASSERT_TRUE(d) << d.error().what();
  EXPECT_EQ(d->first_pos, h.first_pos);
  EXPECT_EQ(d->n_tokens, h.n_tokens);
  EXPECT_EQ(d->key_width, h.key_width);
  EXPECT_EQ(d->dtype, h.dtype);
  EXPECT_EQ(d->shuffle, h.shuffle);
  EXPECT_EQ(d->token_frame_bytes, h.token_frame_bytes);
  EXPECT_EQ(d->key_frame_bytes, h.key_frame_bytes);

  uint8_t bad[kSegmentHeaderBytes];
  std::memcpy(bad, b, sizeof b);
  bad[20] ^= 1;
  EXPECT_EQ(decode_segment_header(bad, "x.ilk").error().code, errc::checksum_mismatch);
  EXPECT_EQ(decode_segment_header({b, 10}, "x.ilk").error().code, errc::checksum_mismatch);

  h.version = kSegmentFormatVersion + 1;  // a newer writer
  encode_segment_header(h, b);
  EXPECT_EQ(decode_segment_header(b, "x.ilk").error().code, errc::unsupported);
}

TEST(Zstd, FrameChecksumIsOnAndCorruptionIsCaught) {
  std::vector<uint8_t> src(10000);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * i % 251);
  ZstdCompressor zc(3);
  std::vector<uint8_t> frame;
  ASSERT_TRUE(zc.compress(src, frame));
  ASSERT_GT(frame.size(), 4u);
  EXPECT_NE(frame[4] & 0x04, 0) << "Content_Checksum_flag must be set in the frame header descriptor";
  std::vector<uint8_t> out(src.size());
  ASSERT_TRUE(zstd_decompress(frame, out, "f", "key"));
  EXPECT_EQ(out, src);
  frame[frame.size() - 1] ^= 0xFF;  // the stored checksum itself
  auto r = zstd_decompress(frame, out, "f", "key");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::checksum_mismatch);
  std::vector<uint8_t> wrong(src.size() + 1);
  EXPECT_FALSE(zstd_decompress(frame, wrong, "f", "key"));
}

}  // namespace
}  // namespace ilre::storage
