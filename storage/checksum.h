// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78), the checksum of every store file.
//
// Why CRC32C and not XXH64 or a 64-bit CRC: it has a single-instruction implementation on x86 (SSE4.2
// `crc32`) and ARMv8 (CRC extension), so verifying a segment costs ~0.1 ms per MB and never shows next to
// zstd; its error-detection properties are known and strong for our sizes (every burst of <= 32 bits and
// every odd number of bit flips is caught; Hamming distance >= 4 up to ~2^31 bits, random corruption slips
// through with p = 2^-32); it is what ext4/btrfs metadata, iSCSI, LevelDB and RocksDB use for the same job.
// The threat is accidental corruption (bad sector, torn copy, hand edit), not an adversary, so a
// cryptographic hash would only cost time. Each zstd frame carries its own XXH64-derived content checksum
// as a second, independent layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace ilre::storage {

// CRC32C of n bytes, continuing from `crc` (the CRC of the bytes before): crc32c(b, crc32c(a)) equals
// crc32c(a ++ b). crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
inline uint32_t crc32c(std::span<const uint8_t> bytes, uint32_t crc = 0) {
  return crc32c(bytes.data(), bytes.size(), crc);
}

// The portable table-driven (slicing-by-8) path, exposed so tests can compare it with the hardware one.
uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc = 0);

// "crc32c:1a2b3c4d" <-> value, the form used in manifest.json. parse returns false on anything else.
std::string checksum_to_string(uint32_t crc);
bool checksum_from_string(std::string_view text, uint32_t* crc);

}  // namespace ilre::storage
