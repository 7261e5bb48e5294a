// BpeModel: byte-pair encoding over one pre-tokenized piece, with the exact
// semantics of Hugging Face tokenizers' models::bpe::BPE (without dropout):
//   - the piece starts as one symbol per character (prefix/suffix rules for
//     continuing_subword_prefix / end_of_word_suffix);
//   - a character missing from the vocabulary becomes its <0xNN> byte tokens
//     (byte_fallback), else the unknown token (fused with a preceding unknown
//     when fuse_unk), else it is dropped, as tokenizers does;
//   - merges apply lowest rank first, leftmost first among equal ranks;
//   - ignore_merges: a piece that is itself a vocabulary entry is one token.
// Byte-level pieces may arrive as raw bytes (Form::kByteLevelRaw): each byte
// stands for its byte-level character, which avoids spelling text out.
//
// Thread-safe: encode() may run concurrently; the word cache takes a lock.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace quanta::tokenizer {

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BpeModel {
 public:
  enum class Input : uint8_t { kText, kByteLevelRaw, kByteLevelSpelled };

  BpeModel() = default;
  BpeModel(BpeModel&& other) noexcept;
  BpeModel& operator=(BpeModel&& other) noexcept;

  // `vocab` maps token strings to ids; `merges` are pairs of vocabulary
  // strings, highest priority first (a later duplicate replaces the rank of an
  // earlier one, as in tokenizers). Throws Error for a merge whose parts or
  // result are not in the vocabulary.
  void init(std::vector<std::pair<std::string, int32_t>> vocab,
            const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);
  // Like init, with explicit ranks (pairs with equal rank merge leftmost first).
  void init_ranked(std::vector<std::pair<std::string, int32_t>> vocab,
                   const std::vector<std::pair<std::pair<std::string, std::string>, uint32_t>>& merges,
                   BpeOptions options);

  void tokenize(std::string_view piece, Input input, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The vocabulary string of `id`, or nullptr when the model has no such id.
  const std::string* id_to_token(int32_t id) const;
  // One past the largest id in the vocabulary.
  int32_t id_end() const { return static_cast<int32_t>(tokens_.size()); }
  const BpeOptions& options() const { return options_; }

 private:
  struct MergeValue {
    uint32_t rank;
    int32_t new_id;
  };
  // Open-addressing hash of (left id, right id) -> merge; the hot lookup.
  struct MergeTable {
    std::vector<uint64_t> keys;
    std::vector<MergeValue> values;
    uint64_t mask = 0;
    void reserve(size_t n);
    void put(uint64_t key, MergeValue v);
    const MergeValue* get(uint64_t key) const;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void build_vocab(std::vector<std::pair<std::string, int32_t>> vocab, BpeOptions options);
  void add_merge(const std::string& a, const std::string& b, uint32_t rank);
  // Appends the initial symbols of `piece` (ids, and byte lengths for unknowns).
  void initial_symbols(std::string_view piece, Input input, std::vector<int32_t>& ids) const;
  void merge(std::vector<int32_t>& ids) const;
  std::optional<int32_t> whole_piece(std::string_view piece, Input input) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_;  // id -> string ("" for holes)
  std::vector<bool> present_;
  // Raw bytes -> id for entries spelled in the byte-level alphabet (for ignore_merges).
  std::unordered_map<std::string, int32_t> raw_vocab_;
  std::array<int32_t, 256> byte_level_ids_{};  // byte -> id of its byte-level character, or -1
  std::array<int32_t, 256> fallback_ids_{};    // byte -> id of "<0xNN>", or -1
  std::optional<int32_t> unk_id_;
  MergeTable merges_;
  BpeOptions options_;

  // Cache of whole pieces (byte-level words repeat a lot).
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace quanta::tokenizer
