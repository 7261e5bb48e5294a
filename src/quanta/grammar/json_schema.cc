// JSON Schema translated to EBNF (grammar.h).
//
// Covered: type (one or a list), const, enum, anyOf / oneOf (as alternatives: oneOf's
// exclusivity is not enforced), allOf of object schemas (merged), $ref within the schema
// (#, #/$defs/..., #/definitions/..., any JSON pointer; recursion allowed), objects with
// properties (in the schema's order), required and additionalProperties, arrays with items,
// prefixItems, minItems and maxItems, strings with minLength, maxLength, pattern and the
// formats date, time, date-time and uuid, integers and numbers (bounds: a lower bound of 0
// or 1, or a closed integer range of at most 1000 values). Annotations (title, description,
// default, examples, unknown formats, ...) are ignored. An assertion the grammar cannot
// enforce is refused naming its path, never silently dropped.
//
// What the grammar produces always validates; it may be narrower than the schema: no
// properties beyond those listed, whitespace limited to one space or a newline and 8 spaces
// (small models otherwise spend their tokens on indentation), numbers to 16 integer digits.
#include <algorithm>
#include <cmath>
#include <optional>
#include <map>
#include <set>

#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/grammar/grammar.h"

namespace quanta::grammar {
namespace {

using nlohmann::ordered_json;

// The JSON building blocks, each added to the grammar the first time it is used.
const std::map<std::string, std::string>& primitives() {
  static const std::map<std::string, std::string> p = {
      {"ws", R"(( " " | "\n" [ ]{0,8} )?)"},
      {"json-char", R"([^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ))"},
      {"json-string", R"("\"" json-char* "\"")"},
      {"json-int", R"("-"? ( "0" | [1-9] [0-9]{0,15} ))"},
      {"json-number", R"(json-int ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?)"},
      {"json-bool", R"("true" | "false")"},
      {"json-null", R"("null")"},
      {"json-value", R"(json-object | json-array | json-string | json-number | json-bool | json-null)"},
      {"json-object", R"("{" ws ( json-string ws ":" ws json-value ws ( "," ws json-string ws ":" ws json-value ws )* )? "}")"},
      {"json-array", R"("[" ws ( json-value ws ( "," ws json-value ws )* )? "]")"},
      {"json-date", R"([0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ))"},
      {"json-time", R"(( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ))"},
      {"json-uuid", R"([0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12})"},
  };
  return p;
}

// Which primitives each one uses.
const std::map<std::string, std::vector<std::string>>& primitive_deps() {
  static const std::map<std::string, std::vector<std::string>> d = {
      {"json-string", {"json-char"}},
      {"json-number", {"json-int"}},
      {"json-value", {"json-object", "json-array", "json-string", "json-number", "json-bool", "json-null"}},
      {"json-object", {"ws", "json-string", "json-value"}},
      {"json-array", {"ws", "json-value"}},
  };
  return d;
}

// Assertions this translation cannot enforce.
const std::set<std::string> kUnsupported = {
    "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies", "patternProperties",
    "propertyNames", "unevaluatedProperties", "unevaluatedItems", "contains", "minContains", "maxContains",
    "multipleOf", "minProperties", "maxProperties", "$dynamicRef", "$recursiveRef"};

class SchemaTranslator {
 public:
  explicit SchemaTranslator(ordered_json root) : root_(std::move(root)) {}

  std::string run() {
    std::string root = gen(root_, "");
    std::string out = "root ::= " + root + "\n" + rules_;
    for (const std::string& p : used_) out += p + " ::= " + primitives().at(p) + "\n";
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& path, const std::string& why) const {
    throw Error("json_schema: at " + (path.empty() ? std::string("the root") : "'" + path + "'") + ": " + why);
  }

  std::string use(const std::string& prim) {
    if (used_.insert(prim).second)
      if (auto it = primitive_deps().find(prim); it != primitive_deps().end())
        for (const auto& d : it->second) use(d);
    return prim;
  }
  std::string rule(const std::string& body) {
    std::string name = "s" + std::to_string(++n_rules_);
    rules_ += name + " ::= " + body + "\n";
    return name;
  }
  static std::string literal_of(const ordered_json& v) {
    return ebnf_literal(v.dump(-1, ' ', false, ordered_json::error_handler_t::strict));
  }

  const ordered_json& resolve(const std::string& ref, const std::string& path) const {
    if (ref.empty() || ref[0] != '#') fail(path, "$ref '" + ref + "' is not within this schema (only '#...' references are)");
    std::string pointer = ref.substr(1);
    try {
      const ordered_json& target = root_.at(ordered_json::json_pointer(pointer));
      return target;
    } catch (const std::exception&) {
      fail(path, "$ref '" + ref + "' points at nothing in the schema");
    }
  }

  std::string gen(const ordered_json& s, const std::string& path) {
    if (++depth_ > 128) fail(path, "the schema nests deeper than 128 levels");
    std::string out = gen_inner(s, path);
    --depth_;
    return out;
  }

  std::string gen_inner(const ordered_json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, "the schema 'false' admits no value");
      return use("json-value");
    }
    if (!s.is_object()) fail(path, "a schema must be an object or a boolean");
    for (auto it = s.begin(); it != s.end(); ++it)
      if (kUnsupported.count(it.key())) fail(path + "/" + it.key(), "'" + it.key() + "' cannot be enforced by the grammar");
    if (s.contains("uniqueItems") && s["uniqueItems"] == true) fail(path + "/uniqueItems", "'uniqueItems' cannot be enforced by the grammar");
    if (s.contains("$ref")) {
      if (!s["$ref"].is_string()) fail(path + "/$ref", "must be a string");
      const std::string ref = s["$ref"].get<std::string>();
      if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
      // Named before it is translated, so a recursive reference finds it.
      std::string name = "s" + std::to_string(++n_rules_);
      refs_[ref] = name;
      std::string body = gen(resolve(ref, path + "/$ref"), ref.substr(1));
      rules_ += name + " ::= " + body + "\n";
      return name;
    }
    if (s.contains("const")) return literal_of(s["const"]);
    if (s.contains("enum")) {
      const ordered_json& e = s["enum"];
      if (!e.is_array() || e.empty()) fail(path + "/enum", "must be a non-empty array");
      std::string alts;
      for (const auto& v : e) alts += (alts.empty() ? "" : " | ") + literal_of(v);
      return "(" + alts + ")";
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      const ordered_json& list = s[key];
      if (!list.is_array() || list.empty()) fail(path + "/" + key, "must be a non-empty array");
      std::string alts;
      for (size_t i = 0; i < list.size(); ++i)
        alts += (i ? " | " : "") + gen(merged_with_siblings(s, list[i], key), path + "/" + key + "/" + std::to_string(i));
      return "(" + alts + ")";
    }
    if (s.contains("allOf")) return gen(merge_all_of(s, path), path);
    if (s.contains("type")) {
      const ordered_json& t = s["type"];
      if (t.is_array()) {
        if (t.empty()) fail(path + "/type", "the list of types is empty");
        std::string alts;
        for (const auto& one : t) {
          if (!one.is_string()) fail(path + "/type", "types must be strings");
          alts += (alts.empty() ? "" : " | ") + typed(s, one.get<std::string>(), path);
        }
        return "(" + alts + ")";
      }
      if (!t.is_string()) fail(path + "/type", "must be a string or a list of strings");
      return typed(s, t.get<std::string>(), path);
    }
    // No type: inferred from the keywords present.
    if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties")) return typed(s, "object", path);
    if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") || s.contains("maxItems")) return typed(s, "array", path);
    if (s.contains("pattern") || s.contains("minLength") || s.contains("maxLength") || s.contains("format")) return typed(s, "string", path);
    if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum"))
      return typed(s, "number", path);
    return use("json-value");
  }

  // anyOf/oneOf branches inherit the keywords beside them ({"type": "object", "anyOf": [...]}).
  static ordered_json merged_with_siblings(const ordered_json& parent, const ordered_json& branch, const char* key) {
    if (!branch.is_object()) return branch;
    ordered_json merged = parent;
    merged.erase(key);
    for (auto it = branch.begin(); it != branch.end(); ++it) merged[it.key()] = it.value();
    if (merged.size() == branch.size()) return branch;
    return merged;
  }

  ordered_json merge_all_of(const ordered_json& s, const std::string& path) {
    const ordered_json& list = s["allOf"];
    if (!list.is_array() || list.empty()) fail(path + "/allOf", "must be a non-empty array");
    ordered_json merged = s;
    merged.erase("allOf");
    for (size_t i = 0; i < list.size(); ++i) {
      const ordered_json* part = &list[i];
      const std::string at = path + "/allOf/" + std::to_string(i);
      for (int hops = 0; part->is_object() && part->contains("$ref"); ++hops) {
        if (hops > 32) fail(at, "$ref chains too long");
        part = &resolve((*part)["$ref"].get<std::string>(), at);
      }
      if (!part->is_object()) fail(at, "allOf parts must be schemas");
      for (auto it = part->begin(); it != part->end(); ++it) {
        const std::string& k = it.key();
        if (k == "properties") {
          if (!merged.contains("properties")) merged["properties"] = ordered_json::object();
          for (auto p = it.value().begin(); p != it.value().end(); ++p) {
            if (merged["properties"].contains(p.key()) && merged["properties"][p.key()] != p.value())
              fail(at + "/properties/" + p.key(), "allOf gives this property two different schemas");
            merged["properties"][p.key()] = p.value();
          }
        } else if (k == "required") {
          if (!merged.contains("required")) merged["required"] = ordered_json::array();
          for (const auto& r : it.value()) merged["required"].push_back(r);
        } else if (k == "title" || k == "description" || k == "$comment" || k == "examples" || k == "default") {
        } else if (merged.contains(k) && merged[k] != it.value()) {
          fail(at + "/" + k, "allOf parts disagree on '" + k + "' (only object parts are merged)");
        } else {
          merged[k] = it.value();
        }
      }
    }
    if (merged.contains("allOf")) fail(path + "/allOf", "nested allOf is not supported");
    return merged;
  }

  std::string typed(const ordered_json& s, const std::string& type, const std::string& path) {
    if (type == "string") return string_schema(s, path);
    if (type == "integer" || type == "number") return number_schema(s, type == "integer", path);
    if (type == "boolean") return use("json-bool");
    if (type == "null") return use("json-null");
    if (type == "object") return object_schema(s, path);
    if (type == "array") return array_schema(s, path);
    fail(path + "/type", "unknown type '" + type + "'");
  }

  static int64_t count_of(const ordered_json& s, const char* key, int64_t fallback, const std::string& path,
                          const SchemaTranslator& t) {
    if (!s.contains(key)) return fallback;
    const ordered_json& v = s[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0) t.fail(path + "/" + key, "must be a non-negative integer");
    if (v.get<int64_t>() > kMaxRepetition) t.fail(path + "/" + key, "is above the limit of " + std::to_string(kMaxRepetition));
    return v.get<int64_t>();
  }

  // item{min, max} with ", " between items; max < 0: unbounded.
  static std::string separated(const std::string& item, int64_t min, int64_t max) {
    if (max == 0) return "\"\"";
    const std::string rest = "( \",\" ws " + item + " ws )";
    std::string reps = "{" + std::to_string(std::max<int64_t>(min - 1, 0)) + "," + (max < 0 ? "" : std::to_string(max - 1)) + "}";
    std::string body = item + " ws " + rest + reps;
    return min == 0 ? "( " + body + " )?" : body;
  }

  std::string string_schema(const ordered_json& s, const std::string& path) {
    const int64_t min = count_of(s, "minLength", 0, path, *this), max = count_of(s, "maxLength", -1, path, *this);
    if (max >= 0 && max < min) fail(path + "/maxLength", "is below minLength");
    std::string body;
    if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) fail(path + "/pattern", "must be a string");
      if (s.contains("minLength") || s.contains("maxLength")) fail(path + "/pattern", "pattern together with minLength/maxLength is not supported");
      try {
        body = regex_to_expression(s["pattern"].get<std::string>(), true, false);
      } catch (const Error& e) {
        fail(path + "/pattern", e.message());
      }
    } else if (s.contains("format") && s["format"].is_string() &&
               (s["format"] == "date" || s["format"] == "time" || s["format"] == "date-time" || s["format"] == "uuid")) {
      const std::string f = s["format"].get<std::string>();
      if (f == "date-time") body = use("json-date") + " \"T\" " + use("json-time");
      else body = use("json-" + f);
    } else if (min == 0 && max < 0) {
      return use("json-string");
    } else {
      use("json-char");
      body = "json-char{" + std::to_string(min) + "," + (max < 0 ? "" : std::to_string(max)) + "}";
    }
    return rule("\"\\\"\" " + body + " \"\\\"\"");
  }

  std::string number_schema(const ordered_json& s, bool integer, const std::string& path) {
    auto bound = [&](const char* key) -> std::optional<double> {
      if (!s.contains(key)) return std::nullopt;
      if (!s[key].is_number()) fail(path + "/" + key, "must be a number");
      return s[key].get<double>();
    };
    std::optional<double> lo = bound("minimum"), hi = bound("maximum"), xlo = bound("exclusiveMinimum"), xhi = bound("exclusiveMaximum");
    if (!lo && !hi && !xlo && !xhi) return use(integer ? "json-int" : "json-number");
    const std::string at = path + "/" + (lo ? "minimum" : hi ? "maximum" : xlo ? "exclusiveMinimum" : "exclusiveMaximum");
    if (integer) {
      // Integer bounds as the closed range [a, b].
      auto as_int = [&](double v, bool up) { return static_cast<int64_t>(up ? std::ceil(v) : std::floor(v)); };
      std::optional<int64_t> a, b;
      if (lo) a = as_int(*lo, true);
      if (xlo) a = std::max(a.value_or(INT64_MIN), as_int(*xlo, false) + 1);
      if (hi) b = as_int(*hi, false);
      if (xhi) b = std::min(b.value_or(INT64_MAX), as_int(*xhi, true) - 1);
      if (a && b) {
        if (*b < *a) fail(at, "the bounds admit no integer");
        if (*b - *a > 1000) fail(at, "integer ranges of more than 1000 values with both bounds are not supported");
        std::string alts;
        for (int64_t v = *a; v <= *b; ++v) alts += (alts.empty() ? "" : " | ") + ebnf_literal(std::to_string(v));
        return "(" + alts + ")";
      }
      if (a && !b && (*a == 0 || *a == 1)) return *a == 0 ? "( \"0\" | [1-9] [0-9]{0,15} )" : "( [1-9] [0-9]{0,15} )";
      fail(at, "only a lower bound of 0 or 1, or a closed range of at most 1000 integers, is supported");
    }
    if (lo && *lo == 0 && !hi && !xlo && !xhi) {  // non-negative
      use("json-int");
      return "( ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )? )";
    }
    fail(at, "bounds on numbers are supported only as minimum 0");
  }

  std::string object_schema(const ordered_json& s, const std::string& path) {
    const ordered_json empty = ordered_json::object();
    const ordered_json& props = s.contains("properties") ? s["properties"] : empty;
    if (!props.is_object()) fail(path + "/properties", "must be an object");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) fail(path + "/required", "must be an array of names");
      for (const auto& r : s["required"]) {
        if (!r.is_string()) fail(path + "/required", "must be an array of names");
        required.insert(r.get<std::string>());
      }
    }
    const bool has_additional = s.contains("additionalProperties");
    if (props.empty() && required.empty()) {
      if (has_additional && s["additionalProperties"] == false) return ebnf_literal("{") + " ws " + ebnf_literal("}");
      if (has_additional && s["additionalProperties"].is_object() && !s["additionalProperties"].empty()) {
        const std::string value = gen(s["additionalProperties"], path + "/additionalProperties");
        const std::string pair = rule(use("json-string") + " ws \":\" ws " + value);
        use("ws");
        return rule("\"{\" ws " + separated(pair, 0, -1) + " \"}\"");
      }
      return use("json-object");
    }
    use("ws");
    // Properties in the schema's order, then required names it does not describe.
    std::vector<std::pair<std::string, std::string>> items;  // (name, pair rule)
    std::vector<bool> must;
    for (auto it = props.begin(); it != props.end(); ++it) {
      const std::string value = gen(it.value(), path + "/properties/" + it.key());
      items.emplace_back(it.key(), rule(literal_of(it.key()) + " ws \":\" ws " + value));
      must.push_back(required.count(it.key()) > 0);
    }
    for (const auto& r : required)
      if (!props.contains(r)) {
        items.emplace_back(r, rule(literal_of(r) + " ws \":\" ws " + use("json-value")));
        must.push_back(true);
      }
    // first[i]: members i.. with none written yet; after[i]: members i.. after one was written.
    const size_t n = items.size();
    std::vector<std::string> first(n + 1), after(n + 1);
    first[n] = after[n] = "\"\"";
    for (size_t k = n; k-- > 0;) {
      const std::string& pair = items[k].second;
      const std::string a = "\",\" ws " + pair + " ws " + after[k + 1];
      const std::string f = pair + " ws " + after[k + 1];
      after[k] = rule(must[k] ? a : "( " + a + " ) | " + after[k + 1]);
      first[k] = rule(must[k] ? f : "( " + f + " ) | " + first[k + 1]);
    }
    return rule("\"{\" ws " + first[0] + " \"}\"");
  }

  std::string array_schema(const ordered_json& s, const std::string& path) {
    int64_t min = count_of(s, "minItems", 0, path, *this), max = count_of(s, "maxItems", -1, path, *this);
    if (max >= 0 && max < min) fail(path + "/maxItems", "is below minItems");
    use("ws");
    std::vector<std::string> prefix;
    if (s.contains("prefixItems")) {
      if (!s["prefixItems"].is_array()) fail(path + "/prefixItems", "must be an array of schemas");
      for (size_t i = 0; i < s["prefixItems"].size(); ++i)
        prefix.push_back(gen(s["prefixItems"][i], path + "/prefixItems/" + std::to_string(i)));
    }
    const bool items_false = s.contains("items") && s["items"] == false;
    std::string item;
    if (!items_false) item = s.contains("items") ? gen(s["items"], path + "/items") : use("json-value");
    if (prefix.empty()) {
      if (items_false) return ebnf_literal("[") + " ws " + ebnf_literal("]");
      return rule("\"[\" ws " + separated(item, min, max) + " \"]\"");
    }
    // Every prefix item is written, then further items within the bounds.
    const auto n = static_cast<int64_t>(prefix.size());
    if (max >= 0 && max < n) fail(path + "/maxItems", "is below the number of prefixItems (all of them are written)");
    std::string body;
    for (size_t i = 0; i < prefix.size(); ++i) body += (i ? " \",\" ws " : "") + prefix[i] + " ws";
    const int64_t extra_min = std::max<int64_t>(min - n, 0), extra_max = max < 0 ? -1 : max - n;
    if (items_false) {
      if (extra_min > 0) fail(path + "/minItems", "is above the number of prefixItems while items is false");
    } else if (extra_max != 0) {
      body += " ( \",\" ws " + item + " ws ){" + std::to_string(extra_min) + "," +
              (extra_max < 0 ? "" : std::to_string(extra_max)) + "}";
    }
    return rule("\"[\" ws " + body + " \"]\"");
  }

  const ordered_json root_;
  std::string rules_;
  std::set<std::string> used_;
  std::map<std::string, std::string> refs_;
  int n_rules_ = 0;
  int depth_ = 0;
};

}  // namespace

std::string json_schema_to_ebnf(std::string_view schema_json) {
  ordered_json schema = parse_json<ordered_json>(schema_json, {.field = "json_schema"});
  return SchemaTranslator(std::move(schema)).run();
}

std::string json_object_ebnf() {
  return "root ::= json-object\n" + SchemaTranslator(ordered_json::object()).run().substr(std::string("root ::= json-value\n").size());
}

}  // namespace quanta::grammar
