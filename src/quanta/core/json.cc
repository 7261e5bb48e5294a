#include "quanta/core/json.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace quanta {

void check_json_depth(std::string_view text, const ErrorContext& where) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // skips the escaped character, so \" does not end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw Error("JSON nests arrays and objects deeper than the limit of " + std::to_string(kMaxJsonDepth) +
                        " levels (at byte " + std::to_string(i) + ")",
                    where);
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;  // unbalanced text is left to the parser to refuse
    }
  }
}

std::string json_error_text(const nlohmann::json::exception& e) {
  std::string s = e.what();
  if (!s.empty() && s[0] == '[') {
    const size_t close = s.find("] ");
    if (close != std::string::npos) s.erase(0, close + 2);
  }
  return s;
}

namespace {
using OJ = nlohmann::ordered_json;
// ordered_map is a std::vector of pairs; appending through the vector skips its linear key search.
using Entries = std::vector<std::pair<const std::string, OJ>>;
Entries& entries(OJ& obj) { return static_cast<Entries&>(obj.get_ref<OJ::object_t&>()); }

// A SAX handler building an ordered_json like nlohmann's DOM parser, with a hash index of the
// keys of each open object. Pointers into parents stay valid: a parent grows only after its
// last child is complete, as in nlohmann's own sax_dom_parser.
class OrderedBuilder {
 public:
  explicit OrderedBuilder(OJ& root) : root_(root) {}

  bool null() { return put(OJ(nullptr)); }
  bool boolean(bool v) { return put(OJ(v)); }
  bool number_integer(OJ::number_integer_t v) { return put(OJ(v)); }
  bool number_unsigned(OJ::number_unsigned_t v) { return put(OJ(v)); }
  bool number_float(OJ::number_float_t v, const std::string&) { return put(OJ(v)); }
  bool string(std::string& v) { return put(OJ(std::move(v))); }
  bool binary(OJ::binary_t& v) { return put(OJ::binary(std::move(v))); }
  bool start_object(size_t) {
    stack_.push_back({put_container(OJ::object()), {}});
    return true;
  }
  bool key(std::string& k) {
    Open& o = stack_.back();
    auto [it, added] = o.index.try_emplace(k, 0);
    Entries& e = entries(*o.value);
    if (added) {
      it->second = e.size();
      e.emplace_back(std::move(k), OJ());
    }
    slot_ = &e[it->second].second;
    return true;
  }
  bool end_object() {
    stack_.pop_back();
    return true;
  }
  bool start_array(size_t) {
    stack_.push_back({put_container(OJ::array()), {}});
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    error_ = json_error_text(e);
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  struct Open {
    OJ* value;
    std::unordered_map<std::string, size_t> index;  // objects only
  };
  // Where the next value goes: the root, the slot of the last key, or the end of an array.
  OJ* place(OJ v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    OJ& top = *stack_.back().value;
    if (top.is_array()) {
      top.get_ref<OJ::array_t&>().push_back(std::move(v));
      return &top.get_ref<OJ::array_t&>().back();
    }
    *slot_ = std::move(v);
    return slot_;
  }
  bool put(OJ v) {
    place(std::move(v));
    return true;
  }
  OJ* put_container(OJ v) { return place(std::move(v)); }

  OJ& root_;
  std::vector<Open> stack_;
  OJ* slot_ = nullptr;
  std::string error_;
};
}  // namespace

nlohmann::ordered_json parse_ordered_json(std::string_view text, const ErrorContext& where) {
  OJ root;
  OrderedBuilder b(root);
  bool ok = false;
  try {
    ok = OJ::sax_parse(text, &b);
  } catch (const nlohmann::json::exception& e) {
    throw Error("invalid JSON: " + json_error_text(e), where);
  }
  if (!ok) throw Error("invalid JSON: " + b.error(), where);
  return root;
}

void assign_keys(nlohmann::ordered_json& into, const nlohmann::ordered_json& from) {
  Entries& e = entries(into);
  std::unordered_map<std::string_view, size_t> index;  // views of keys in `into`; stable once reserved
  e.reserve(e.size() + from.size());
  for (size_t i = 0; i < e.size(); ++i) index.emplace(e[i].first, i);
  for (auto it = from.begin(); it != from.end(); ++it) {
    auto found = index.find(it.key());
    if (found != index.end()) {
      e[found->second].second = it.value();
    } else {
      e.emplace_back(it.key(), it.value());
      index.emplace(e.back().first, e.size() - 1);
    }
  }
}

}  // namespace quanta
