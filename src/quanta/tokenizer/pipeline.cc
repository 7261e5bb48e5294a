#include "quanta/tokenizer/pipeline.h"

#include <algorithm>

#include "quanta/core/error.h"
#include "quanta/tokenizer/unicode.h"

namespace quanta::tokenizer {

namespace {

using Range = std::pair<size_t, size_t>;

// GPT-2's pre-tokenization pattern, used by ByteLevel(use_regex=true).
// Format fact from tokenizers' pre_tokenizers/byte_level.rs (and openai/gpt-2 encoder.py).
const Regex& gpt2_regex() {
  static const Regex re(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  return re;
}

// tokenizers' NormalizedString::split: from the matches of a pattern, the
// ranges of the pieces that `behavior` keeps.
void split_ranges(size_t len, const std::vector<Range>& found, SplitBehavior behavior, bool invert,
                  std::vector<Range>& out) {
  // (range, is_match) covering [0, len), as Pattern::find_matches gives them.
  thread_local std::vector<std::pair<Range, bool>> parts;
  parts.clear();
  if (len == 0) {
    parts.push_back({{0, 0}, false});
  } else {
    size_t prev = 0;
    for (const auto& [s, e] : found) {
      if (prev != s) parts.push_back({{prev, s}, false});
      parts.push_back({{s, e}, true});
      prev = e;
    }
    if (prev != len) parts.push_back({{prev, len}, false});
  }
  if (invert)
    for (auto& p : parts) p.second = !p.second;
  out.clear();
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (auto& p : parts) out.push_back(p.first);
      break;
    case SplitBehavior::kRemoved:
      for (auto& p : parts)
        if (!p.second) out.push_back(p.first);
      break;
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      for (auto& p : parts) {
        if (p.second == prev_match && !out.empty()) out.back().second = p.first.second;
        else out.push_back(p.first);
        prev_match = p.second;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (auto& p : parts) {
        if (p.second && !prev_match && !out.empty()) out.back().second = p.first.second;
        else out.push_back(p.first);
        prev_match = p.second;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev_match = false;
      for (size_t k = parts.size(); k-- > 0;) {
        auto& p = parts[k];
        if (p.second && !prev_match && !out.empty()) out.back().first = p.first.first;
        else out.push_back(p.first);
        prev_match = p.second;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

std::string regex_replace(const Regex& re, std::string_view s, std::string_view content) {
  thread_local std::vector<Range> found;
  found.clear();
  re.find_all(s, found);
  if (found.empty()) return std::string(s);
  std::string out;
  size_t prev = 0;
  for (const auto& [b, e] : found) {
    out.append(s.data() + prev, b - prev);
    out += content;
    prev = e;
  }
  out.append(s.data() + prev, s.size() - prev);
  return out;
}

// Rust's str::trim_start / trim_end (White_Space).
std::string_view trim(std::string_view s, bool left, bool right) {
  if (left) {
    size_t i = 0;
    while (i < s.size()) {
      size_t j = i;
      if (!is_whitespace(utf8_next(s, j))) break;
      i = j;
    }
    s.remove_prefix(i);
  }
  if (right) {
    while (!s.empty()) {
      size_t k = s.size() - 1;
      while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
      size_t j = k;
      if (!is_whitespace(utf8_next(s, j))) break;
      s.remove_suffix(s.size() - k);
    }
  }
  return s;
}

}  // namespace

std::string Pipeline::normalize(std::string_view text) const {
  std::string s(text);
  for (const NormalizerStep& n : normalizers) {
    switch (n.kind) {
      case NormalizerStep::Kind::kNfc: s = tokenizer::normalize(s, NormalForm::kNfc); break;
      case NormalizerStep::Kind::kNfd: s = tokenizer::normalize(s, NormalForm::kNfd); break;
      case NormalizerStep::Kind::kNfkc: s = tokenizer::normalize(s, NormalForm::kNfkc); break;
      case NormalizerStep::Kind::kNfkd: s = tokenizer::normalize(s, NormalForm::kNfkd); break;
      case NormalizerStep::Kind::kLowercase: s = lowercase(s); break;
      case NormalizerStep::Kind::kStripAccents: s = strip_accents(s); break;
      case NormalizerStep::Kind::kStrip: s = std::string(trim(s, n.strip_left, n.strip_right)); break;
      case NormalizerStep::Kind::kReplace: s = regex_replace(*n.pattern, s, n.content); break;
      case NormalizerStep::Kind::kPrepend:
        // tokenizers' Prepend leaves an empty string empty.
        if (!s.empty()) s.insert(0, n.content);
        break;
    }
  }
  return s;
}

void Pipeline::pre_tokenize(std::vector<Piece>& pieces) const {
  std::vector<Piece> next;
  std::vector<Range> found, kept;
  for (size_t step = 0; step < pre_tokenizers.size(); ++step) {
    const PreTokenizerStep& p = pre_tokenizers[step];
    const bool last = step + 1 == pre_tokenizers.size();
    next.clear();
    next.reserve(pieces.size() * 2);
    for (Piece& piece : pieces) {
      if (piece.id >= 0) {
        next.push_back(std::move(piece));
        continue;
      }
      std::string text = std::move(piece.text);
      const Regex* re = nullptr;
      SplitBehavior behavior = SplitBehavior::kIsolated;
      bool invert = false;
      Piece::Form form = piece.form;
      switch (p.kind) {
        case PreTokenizerStep::Kind::kSplit:
          re = p.pattern.get();
          behavior = p.behavior;
          invert = p.invert;
          break;
        case PreTokenizerStep::Kind::kByteLevel:
          if (p.add_prefix_space && (text.empty() || text[0] != ' ')) text.insert(0, " ");
          if (p.use_regex) re = &gpt2_regex();
          form = last ? Piece::Form::kByteLevelRaw : Piece::Form::kByteLevelSpelled;
          break;
        case PreTokenizerStep::Kind::kMetaspace: {
          replace_all(text, " ", p.replacement);
          bool starts = text.compare(0, p.replacement.size(), p.replacement) == 0;
          if (!starts && (p.prepend_scheme == PrependScheme::kAlways ||
                          (p.prepend_scheme == PrependScheme::kFirst && piece.at_start)))
            text.insert(0, p.replacement);
          if (p.split) {
            re = p.pattern.get();  // the replacement character, literally
            behavior = SplitBehavior::kMergedWithNext;
          }
          break;
        }
      }
      if (!re) {
        if (!text.empty()) next.push_back(Piece{std::move(text), -1, piece.at_start, form});
        continue;
      }
      found.clear();
      re->find_all(text, found);
      split_ranges(text.size(), found, behavior, invert, kept);
      for (const auto& [b, e] : kept) {
        if (b == e) continue;  // tokenizers drops empty splits
        Piece sub{text.substr(b, e - b), -1, piece.at_start && b == 0, form};
        if (form == Piece::Form::kByteLevelSpelled && piece.form != form) sub.text = byte_level_encode(sub.text);
        next.push_back(std::move(sub));
      }
    }
    pieces.swap(next);
  }
}

void Pipeline::encode(std::string_view text, bool parse_special, std::vector<int32_t>& out) const {
  std::vector<Piece> pieces;
  std::vector<AddedVocab::Match> raw_matches, norm_matches;
  added.find(text, /*normalized_set=*/false, parse_special, raw_matches);
  // Text between raw matches is normalized, then searched for normalized added tokens.
  auto add_text = [&](std::string_view part, bool at_start) {
    if (part.empty()) return;
    std::string normalized = normalize(part);
    norm_matches.clear();
    added.find(normalized, /*normalized_set=*/true, parse_special, norm_matches);
    size_t prev = 0;
    for (const auto& m : norm_matches) {
      if (prev < m.start) pieces.push_back(Piece{normalized.substr(prev, m.start - prev), -1, at_start && prev == 0});
      pieces.push_back(Piece{std::string(), m.id, false});
      prev = m.end;
    }
    if (prev < normalized.size()) pieces.push_back(Piece{normalized.substr(prev), -1, at_start && prev == 0});
  };
  size_t prev = 0;
  for (const auto& m : raw_matches) {
    if (prev < m.start) add_text(text.substr(prev, m.start - prev), prev == 0);
    pieces.push_back(Piece{std::string(), m.id, false});
    prev = m.end;
  }
  if (prev < text.size()) add_text(text.substr(prev), prev == 0);

  pre_tokenize(pieces);
  for (const Piece& piece : pieces) {
    if (piece.id >= 0) {
      out.push_back(piece.id);
      continue;
    }
    BpeModel::Input input = piece.form == Piece::Form::kText           ? BpeModel::Input::kText
                            : piece.form == Piece::Form::kByteLevelRaw ? BpeModel::Input::kByteLevelRaw
                                                                       : BpeModel::Input::kByteLevelSpelled;
    model.tokenize(piece.text, input, out);
  }
}

std::string Pipeline::decode_tokens(std::vector<std::string> tokens, bool raw, bool continuation) const {
  if (!has_decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return raw ? out : utf8_lossy(out);
  }
  std::vector<std::string> next;
  bool fused = false;  // tokens[0] is the whole text so far, not one token
  for (const DecoderStep& d : decoders) {
    switch (d.kind) {
      case DecoderStep::Kind::kByteLevel: {
        // Each token's characters back to bytes (a token outside the alphabet, such
        // as an added token with a space, stands for its own UTF-8), then lossy UTF-8
        // over the whole run: tokenizers' ByteLevel::decode_chain.
        std::string bytes, decoded;
        for (const auto& t : tokens) {
          if (byte_level_decode(t, decoded)) bytes += decoded;
          else bytes += t;
        }
        tokens.assign(1, raw ? bytes : utf8_lossy(bytes));
        fused = true;
        break;
      }
      case DecoderStep::Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          // tokenizers drops every replacement character of the first token unless
          // the scheme is "never", and turns the others into spaces.
          bool drop = i == 0 && !continuation && d.prepend_scheme != PrependScheme::kNever;
          replace_all(tokens[i], d.content, drop ? "" : " ");
        }
        break;
      case DecoderStep::Kind::kByteFallback: {
        next.clear();
        std::string pending;
        auto flush = [&] {
          if (pending.empty()) return;
          // A run of byte tokens that is not valid UTF-8 gives one U+FFFD per byte.
          if (raw || utf8_validate(pending) == std::string::npos) next.push_back(pending);
          else
            for (size_t k = 0; k < pending.size(); ++k) next.emplace_back("\xEF\xBF\xBD");
          pending.clear();
        };
        for (auto& t : tokens) {
          auto hexval = [](char c) {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            return -1;
          };
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hexval(t[3]) >= 0 && hexval(t[4]) >= 0) {
            pending += static_cast<char>(hexval(t[3]) * 16 + hexval(t[4]));
          } else {
            flush();
            next.push_back(std::move(t));
          }
        }
        flush();
        tokens.swap(next);
        break;
      }
      case DecoderStep::Kind::kFuse: {
        std::string all;
        for (auto& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        fused = true;
        break;
      }
      case DecoderStep::Kind::kStrip:
        for (size_t i = 0; i < tokens.size(); ++i) {
          // Character-wise, up to `start` leading and `stop` trailing copies of content
          // (per token; after a Fuse the one token is the text, whose start a
          // continuation does not have).
          std::string& t = tokens[i];
          std::string_view v = t;
          const size_t start = continuation && fused && i == 0 ? 0 : d.start;
          for (size_t k = 0; k < start && v.compare(0, d.content.size(), d.content) == 0 && !v.empty(); ++k)
            v.remove_prefix(d.content.size());
          for (size_t k = 0; k < d.stop && v.size() >= d.content.size() && !v.empty() &&
                             v.compare(v.size() - d.content.size(), d.content.size(), d.content) == 0;
               ++k)
            v.remove_suffix(d.content.size());
          t = std::string(v);
        }
        break;
      case DecoderStep::Kind::kReplace:
        for (auto& t : tokens) t = regex_replace(*d.pattern, t, d.content);
        break;
    }
  }
  std::string out;
  for (auto& t : tokens) out += t;
  if (!raw && utf8_validate(out) != std::string::npos) out = utf8_lossy(out);
  return out;
}

}  // namespace quanta::tokenizer
