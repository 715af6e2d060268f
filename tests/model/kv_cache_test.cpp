#include "model/kv_cache.h"

#include <gtest/gtest.h>

#include "ilre/error.h"

namespace ilre::model {
namespace {

HParams tiny_hparams() {
  HParams hp;
  hp.n_layer = 2;
  hp.n_head = 2;
  hp.n_head_kv = 1;
  hp.head_dim_k = 2;
  hp.head_dim_v = 2;
  return hp;
}

std::vector<int32_t> positions_of(const KvCache& c, int64_t layer) {
  auto p = c.positions(layer);
  return {p.begin(), p.end()};
}

TEST(KvCache, EvictMiddleKeepsSinkAndWindowInOrder) {
  KvCache c(tiny_hparams(), 2, KvType::f32);
  std::vector<float> k(20), v(20);
  for (int i = 0; i < 20; ++i) k[i] = v[i] = static_cast<float>(i);
  std::vector<int32_t> pos{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  for (int64_t l = 0; l < 2; ++l) c.append(l, k.data(), v.data(), pos.data(), 10);
  c.evict_middle(2, 3);
  for (int64_t l = 0; l < 2; ++l) {
    EXPECT_EQ(positions_of(c, l), (std::vector<int32_t>{0, 1, 7, 8, 9}));
    const auto* kk = static_cast<const float*>(c.keys(l));
    EXPECT_EQ(std::vector<float>(kk, kk + 10), (std::vector<float>{0, 1, 2, 3, 14, 15, 16, 17, 18, 19}));
  }
}

TEST(KvCache, F16StorageRoundsAndTruncateRewinds) {
  KvCache c(tiny_hparams(), 1, KvType::f16);
  const std::vector<float> k{1.0f, 1.0001f, 3.0f, -2.5f}, v{0.5f, 0.25f, 8.0f, 1e-3f};
  const std::vector<int32_t> pos{4, 5};
  c.append(0, k.data(), v.data(), pos.data(), 2);
  const auto* kk = static_cast<const uint16_t*>(c.keys(0));
  EXPECT_EQ(kk[0], 0x3C00);  // 1.0
  EXPECT_EQ(kk[1], 0x3C00);  // 1.0001 rounds to 1.0 in F16
  c.truncate_from(5);
  EXPECT_EQ(c.size(0), 1);
  EXPECT_EQ(positions_of(c, 0), std::vector<int32_t>{4});
}

TEST(KvCache, DecreasingPositionsAreRejected) {
  KvCache c(tiny_hparams(), 1, KvType::f32);
  std::vector<float> k(4), v(4);
  const std::vector<int32_t> p1{5, 6}, p2{3, 4};
  c.append(0, k.data(), v.data(), p1.data(), 2);
  EXPECT_THROW(c.append(0, k.data(), v.data(), p2.data(), 2), Exception);
}

}  // namespace
}  // namespace ilre::model

namespace ilre::model {
namespace {

TEST(KvCacheImage, RoundTripsAndRejectsDamage) {
  const HParams hp = tiny_hparams();
  KvCache c(hp, 2, KvType::f16);
  std::vector<float> k{1, 2, 3, 4}, v{5, 6, 7, 8};
  std::vector<int32_t> pos{10, 11};
  for (int64_t l = 0; l < 2; ++l) c.append(l, k.data(), v.data(), pos.data(), 2);
  const std::vector<uint8_t> image = c.serialize();
  KvCache back = KvCache::deserialize(hp, image);
  EXPECT_EQ(back.serialize(), image);
  EXPECT_EQ(back.type(), KvType::f16);
  EXPECT_EQ(positions_of(back, 1), pos);

  std::vector<uint8_t> flipped = image;
  flipped[flipped.size() / 2] ^= 0x40;
  EXPECT_THROW(KvCache::deserialize(hp, flipped), Exception);
  EXPECT_THROW(KvCache::deserialize(hp, std::span<const uint8_t>(image.data(), image.size() - 3)), Exception);
  HParams other = hp;
  other.head_dim_k = 4;
  try {
    KvCache::deserialize(other, image);
    FAIL();
  } catch (const Exception& e) {
    EXPECT_EQ(e.code(), errc::model_mismatch);
  }
}

}  // namespace
}  // namespace ilre::model
