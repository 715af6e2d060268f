#include "storage/store_merge.h"

#include <optional>
#include <system_error>
#include <vector>

#include "storage/guarded.h"
#include "storage/store_reader.h"
#include "storage/store_writer.h"

namespace ilre::storage {

namespace fs = std::filesystem;

namespace {

Result<StoreStats> merge_into(const fs::path& out, std::span<const fs::path> shards, MergeOptions& options) {
  auto first = StoreReader::open(shards.front());
  if (!first) return tl::unexpected(first.error());
  if (first->meta().first_pos != 0) {
    return make_error(errc::out_of_range, "the first shard " + shards.front().string() + " starts at position " +
                                              std::to_string(first->meta().first_pos) + ", not 0: a shard is missing");
  }
  StoreMeta meta = first->meta();
  meta.notes = nlohmann::json::object();
  auto writer = StoreWriter::create(out, meta, options.write);
  if (!writer) return tl::unexpected(writer.error());
  writer->begin_transaction();  // destroying the writer before commit() removes what it wrote
  std::vector<nlohmann::json> notes;
  std::optional<StoreReader> last;
  for (const fs::path& shard : shards) {
    auto r = writer->append_store(shard, options.same_config);
    if (!r) return tl::unexpected(r.error());
    auto reader = StoreReader::open(shard);
    if (!reader) return tl::unexpected(reader.error());
    notes.push_back(reader->meta().notes);
    last.emplace(std::move(*reader));
  }
  if (last->has_state()) {
    auto blob = last->state();
    if (!blob) return tl::unexpected(blob.error());
    if (auto r = writer->write_state(*blob); !r) return tl::unexpected(r.error());
  }
  nlohmann::json merged = notes.back();
  if (options.merge_notes) {
    auto m = options.merge_notes(notes, writer->n_tokens());
    if (!m) return tl::unexpected(m.error());
    merged = std::move(*m);
  }
  if (auto r = writer->set_notes(std::move(merged)); !r) return tl::unexpected(r.error());
  if (auto r = writer->commit(); !r) return tl::unexpected(r.error());
  return writer->stats();
}

}  // namespace

Result<StoreStats> merge_stores(const fs::path& out, std::span<const fs::path> shards, MergeOptions options) {
  return guarded([&]() -> Result<StoreStats> {
    if (shards.empty()) return make_error(errc::invalid_argument, "merge: no shard stores given");
    std::error_code ec;
    const bool existed = fs::exists(out, ec);
    // Anything else there makes create() refuse, and then nothing may be removed.
    const bool ours = !existed || (fs::is_directory(out, ec) && fs::is_empty(out, ec));
    auto r = merge_into(out, shards, options);
    if (!r && ours) {
      // The rollback removed the segments; the empty manifest create() wrote and the directory go too.
      if (!existed) {
        fs::remove_all(out, ec);
      } else {
        for (const auto& entry : fs::directory_iterator(out, ec)) fs::remove_all(entry.path(), ec);
      }
    }
    return r;
  });
}

}  // namespace ilre::storage
