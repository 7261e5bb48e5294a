#include "quanta/report/quant_map.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>

#include "quanta/report/svg.h"

namespace quanta::report {
namespace {

bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

bool is_float_scheme(const std::string& s) {
  return s == "FLOAT" || s == "F32" || s == "F16" || s == "BF16" || s == "F64";
}

// "A x120 + B x8" (experts whose schemes differ) as (scheme, count); a plain scheme as (it, 1).
std::vector<std::pair<std::string, int64_t>> scheme_spread(const std::string& scheme) {
  std::vector<std::pair<std::string, int64_t>> out;
  size_t start = 0;
  while (start <= scheme.size()) {
    size_t end = scheme.find(" + ", start);
    const std::string part = scheme.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const size_t x = part.rfind(" x");
    char* stop = nullptr;
    const long long count = x == std::string::npos ? 0 : std::strtoll(part.c_str() + x + 2, &stop, 10);
    if (count > 0 && stop && *stop == '\0') out.emplace_back(part.substr(0, x), count);
    else out.emplace_back(part, 1);
    if (end == std::string::npos) break;
    start = end + 3;
  }
  return out;
}

// One cell: the tensors that fall on it, their parameters and bytes per scheme.
struct Cell {
  std::map<std::string, std::pair<double, double>> by_scheme;  // params, bytes
  std::vector<std::string> tensors;
  double params = 0, bytes = 0;
  double bits() const { return params > 0 ? 8.0 * bytes / params : 0.0; }
};

struct Totals {
  int64_t tensors = 0;
  double params = 0, bytes = 0;
};

struct Map {
  std::vector<std::string> columns;           // drawn, in map_columns() order
  std::vector<int64_t> layers;                // -1 first (outside the layers), then in order
  std::map<std::pair<int64_t, std::string>, Cell> cells;
  std::vector<std::string> schemes;           // in order of appearance, for colours
  std::map<std::string, Totals> per_scheme;   // every tensor, on the map or not
  Totals total;
};

Map build(const std::vector<MapTensor>& tensors) {
  Map m;
  std::map<std::string, bool> column_seen;
  std::map<int64_t, bool> layer_seen;
  auto note_scheme = [&](const std::string& s) {
    if (std::find(m.schemes.begin(), m.schemes.end(), s) == m.schemes.end()) m.schemes.push_back(s);
  };
  for (const MapTensor& t : tensors) {
    const auto spread = scheme_spread(t.scheme);
    int64_t count = 0;
    for (const auto& [s, c] : spread) count += c;
    const MapPlace place = map_place(t.tensor);
    for (const auto& [s, c] : spread) {
      const double share = static_cast<double>(c) / static_cast<double>(count);
      note_scheme(s);
      Totals& tot = m.per_scheme[s];
      tot.params += share * static_cast<double>(t.params);
      tot.bytes += share * static_cast<double>(t.bytes);
      tot.tensors += 1;
    }
    m.total.tensors += 1;
    m.total.params += static_cast<double>(t.params);
    m.total.bytes += static_cast<double>(t.bytes);
    if (place.column.empty()) continue;
    column_seen[place.column] = true;
    layer_seen[place.layer] = true;
    Cell& cell = m.cells[{place.layer, place.column}];
    for (const auto& [s, c] : spread) {
      const double share = static_cast<double>(c) / static_cast<double>(count);
      auto& [p, b] = cell.by_scheme[s];
      p += share * static_cast<double>(t.params);
      b += share * static_cast<double>(t.bytes);
    }
    cell.params += static_cast<double>(t.params);
    cell.bytes += static_cast<double>(t.bytes);
    cell.tensors.push_back(t.tensor);
  }
  for (const std::string& c : map_columns())
    if (column_seen.count(c)) m.columns.push_back(c);
  for (const auto& [l, seen] : layer_seen) m.layers.push_back(l);
  // Float schemes go last in the legend and take the greys.
  std::stable_partition(m.schemes.begin(), m.schemes.end(), [](const std::string& s) { return !is_float_scheme(s); });
  return m;
}

std::string colour(const Map& m, const std::string& scheme) {
  static const char* kGreys[] = {"#BBBBBB", "#DDDDDD", "#999999", "#EEEEEE"};
  size_t coloured = 0, greys = 0;
  for (const std::string& s : m.schemes) {
    const bool grey = is_float_scheme(s);
    if (s == scheme) return grey ? kGreys[greys % 4] : palette(coloured);
    (grey ? greys : coloured) += 1;
  }
  return "#000000";
}

std::string layer_name(int64_t layer) { return layer < 0 ? "model" : "layer " + std::to_string(layer); }

// The cell's schemes by share of its parameters: "Q4_K" or "Q4_K 75% + Q6_K 25%".
std::string cell_scheme(const Cell& c) {
  if (c.by_scheme.size() == 1) return c.by_scheme.begin()->first;
  std::vector<std::pair<double, std::string>> parts;
  for (const auto& [s, pb] : c.by_scheme) parts.emplace_back(-pb.first, s);
  std::sort(parts.begin(), parts.end());
  std::string out;
  for (const auto& [neg, s] : parts)
    out += (out.empty() ? "" : " + ") + s + " " + num(100.0 * -neg / c.params, 1) + "%";
  return out;
}

}  // namespace

const std::vector<std::string>& map_columns() {
  static const std::vector<std::string> kColumns = {"embedding", "q",      "k",          "v",          "qkv",
                                                    "o",         "gate",   "up",         "gate_up",    "down",
                                                    "router",    "experts w13", "experts w2", "shared w13",
                                                    "shared w2", "lm_head"};
  return kColumns;
}

MapPlace map_place(const std::string& tensor) {
  std::string name;
  for (char c : tensor) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // The layer: a number after blk / layers / layer / h / blocks.
  MapPlace p;
  std::string rest = name;
  size_t pos = 0;
  while (pos < name.size()) {
    size_t dot = name.find('.', pos);
    if (dot == std::string::npos) break;
    const std::string word = name.substr(pos, dot - pos);
    size_t end = dot + 1;
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
    if (end > dot + 1 && end < name.size() && name[end] == '.' &&
        (word == "blk" || word == "layers" || word == "layer" || word == "h" || word == "blocks") && end - dot <= 7) {
      p.layer = std::strtoll(name.c_str() + dot + 1, nullptr, 10);
      rest = name.substr(end + 1);
      break;
    }
    pos = dot + 1;
  }
  if (p.layer < 0) {
    if (has(name, "token_embd") || has(name, "embed_tokens") || has(name, "wte.")) p.column = "embedding";
    else if (name.rfind("output.", 0) == 0 || has(name, "lm_head")) p.column = "lm_head";
    return p;
  }
  const std::string& r = rest;
  if (has(r, "norm") || has(r, "bias")) return p;  // not projections
  const bool shared = has(r, "shexp") || has(r, "shared_expert");
  const bool experts = !shared && (has(r, "_exps") || has(r, "experts"));
  const bool down = has(r, "down") || has(r, ".w2");
  const bool gate_or_up = has(r, "gate") || has(r, "up") || has(r, ".w1") || has(r, ".w3");
  if (has(r, "gate_inp") || r.rfind("shared_expert_gate", 0) == 0 || has(r, ".shared_expert_gate") ||
      r == "mlp.gate.weight" || has(r, "router") || has(r, "block_sparse_moe.gate.")) {
    p.column = "router";
  } else if (experts) {
    if (down) p.column = "experts w2";
    else if (gate_or_up) p.column = "experts w13";
  } else if (shared) {
    if (down) p.column = "shared w2";
    else if (gate_or_up) p.column = "shared w13";
  } else {
    // Dense projections: the first column one of whose name fragments (GGUF, HF) the name holds.
    static const struct {
      const char* column;
      const char* gguf;
      const char* hf;
    } kDense[] = {{"qkv", "attn_qkv", "qkv_proj"},  {"q", "attn_q.", "q_proj"},
                  {"k", "attn_k.", "k_proj"},       {"v", "attn_v.", "v_proj"},
                  {"o", "attn_output", "o_proj"},   {"gate_up", "ffn_gate_up", "gate_up_proj"},
                  {"gate", "ffn_gate.", "gate_proj"}, {"up", "ffn_up.", "up_proj"},
                  {"down", "ffn_down.", "down_proj"}};
    for (const auto& d : kDense)
      if (has(r, d.gguf) || has(r, d.hf)) {
        p.column = d.column;
        break;
      }
  }
  return p;
}

std::string quant_map_svg(const std::string& title, const std::vector<MapTensor>& tensors, bool standalone) {
  const Map m = build(tensors);
  constexpr double kWidth = 1000, kLabel = 70, kMargin = 12, kHeader = 62;
  const size_t n_rows = std::max<size_t>(1, m.layers.size());
  const size_t n_cols = std::max<size_t>(1, m.columns.size());
  const double row_h = std::clamp(900.0 / static_cast<double>(n_rows), 10.0, 22.0);
  const double col_w = (kWidth - kLabel - 2 * kMargin) / static_cast<double>(n_cols);
  const double font = std::min(11.0, row_h * 0.72);
  const double map_bottom = kHeader + row_h * static_cast<double>(n_rows);
  const double legend_row = 18;
  const double height = map_bottom + 30 + legend_row * static_cast<double>(m.schemes.size() + 2) + kMargin;

  Svg svg(kWidth, height);
  svg.text(kMargin, 22, title, 15, "start", {{"font-weight", "bold"}});
  svg.text(kMargin, 40,
           "One row per layer, one column per projection; colour = scheme, label = bits per weight "
           "(bytes in the checkpoint, scales included, x 8 / parameters).",
           10.5, "start", {{"fill", "#555555"}});
  for (size_t c = 0; c < m.columns.size(); ++c)
    svg.text(kLabel + kMargin + (static_cast<double>(c) + 0.5) * col_w, kHeader - 6, m.columns[c],
             col_w < 60 ? 9 : 11, "middle", {{"class", "column"}});
  for (size_t li = 0; li < m.layers.size(); ++li) {
    const int64_t layer = m.layers[li];
    const double y = kHeader + row_h * static_cast<double>(li);
    svg.text(kMargin + kLabel - 6, y + row_h * 0.5 + font * 0.35, layer_name(layer), font, "end", {{"class", "layer"}});
    for (size_t c = 0; c < m.columns.size(); ++c) {
      auto it = m.cells.find({layer, m.columns[c]});
      if (it == m.cells.end()) continue;
      const Cell& cell = it->second;
      const double x = kLabel + kMargin + static_cast<double>(c) * col_w;
      std::string names;
      for (const std::string& t : cell.tensors) names += (names.empty() ? "" : ", ") + t;
      const std::string scheme = cell_scheme(cell);
      const std::string info = layer_name(layer) + " / " + m.columns[c] + ": " + scheme + ", " + num(cell.bits(), 3) +
                               " bits per weight, " + human_bytes(cell.bytes) + " (" + names + ")";
      svg.open_group({{"class", "cell"},
                      {"data-layer", std::to_string(layer)},
                      {"data-column", m.columns[c]},
                      {"data-scheme", scheme},
                      {"data-bits", num(cell.bits(), 3)},
                      {"data-tensors", names},
                      {"data-info", info}});
      // Stripes by share of parameters, largest scheme first (one stripe for one scheme).
      std::vector<std::pair<double, std::string>> parts;
      for (const auto& [s, pb] : cell.by_scheme) parts.emplace_back(-pb.first, s);
      std::sort(parts.begin(), parts.end());
      double sx = x + 1;
      const double inner = col_w - 2;
      for (const auto& [neg, s] : parts) {
        const double w = inner * (-neg / cell.params);
        svg.rect(sx, y + 1, std::max(0.5, w), row_h - 2, colour(m, s), {{"data-scheme", s}});
        sx += w;
      }
      svg.rect(x + 1, y + 1, inner, row_h - 2, "none", {{"stroke", "#ffffff"}, {"stroke-width", "0.5"}}, info);
      if (col_w >= 26 && row_h >= 9)
        svg.text(x + col_w * 0.5, y + row_h * 0.5 + font * 0.35, num(cell.bits(), 2), font, "middle",
                 {{"fill", is_float_scheme(parts.front().second) ? "#333333" : "#ffffff"}, {"class", "bits"},
                  {"pointer-events", "none"}});
      svg.close_group();
    }
  }
  // Legend and totals.
  double y = map_bottom + 26;
  svg.text(kMargin, y, "scheme", 11, "start", {{"font-weight", "bold"}});
  svg.text(260, y, "tensors", 11, "end", {{"font-weight", "bold"}});
  svg.text(380, y, "bytes", 11, "end", {{"font-weight", "bold"}});
  svg.text(480, y, "share", 11, "end", {{"font-weight", "bold"}});
  svg.text(600, y, "bits / weight", 11, "end", {{"font-weight", "bold"}});
  for (const std::string& s : m.schemes) {
    y += legend_row;
    const Totals& t = m.per_scheme.at(s);
    const double bpw = t.params > 0 ? 8.0 * t.bytes / t.params : 0.0;
    const std::string info = s + ": " + std::to_string(t.tensors) + " tensors, " + human_bytes(t.bytes) + ", " +
                             num(bpw, 3) + " bits per weight";
    svg.open_group({{"class", "legend"}, {"data-scheme", s}, {"data-bytes", num(t.bytes, 0)},
                    {"data-bits", num(bpw, 3)}, {"data-info", info}});
    svg.rect(kMargin, y - 11, 24, 13, colour(m, s));
    svg.text(kMargin + 32, y, s, 11);
    svg.text(260, y, std::to_string(t.tensors), 11, "end");
    svg.text(380, y, human_bytes(t.bytes), 11, "end");
    svg.text(480, y, num(m.total.bytes > 0 ? 100.0 * t.bytes / m.total.bytes : 0.0, 1) + "%", 11, "end");
    svg.text(600, y, num(bpw, 3), 11, "end");
    svg.close_group();
  }
  y += legend_row;
  const double avg = m.total.params > 0 ? 8.0 * m.total.bytes / m.total.params : 0.0;
  svg.open_group({{"class", "total"}, {"data-bytes", num(m.total.bytes, 0)}, {"data-bits", num(avg, 3)}});
  svg.text(kMargin, y, "total", 11, "start", {{"font-weight", "bold"}});
  svg.text(260, y, std::to_string(m.total.tensors), 11, "end", {{"font-weight", "bold"}});
  svg.text(380, y, human_bytes(m.total.bytes), 11, "end", {{"font-weight", "bold"}});
  svg.text(600, y, num(avg, 3), 11, "end", {{"font-weight", "bold"}});
  svg.text(620, y, "over " + num(m.total.params / 1e6, 1) + " M parameters (norms and biases included)", 11);
  svg.close_group();
  return svg.str(standalone);
}

std::string quant_map_html(const std::string& title, const std::vector<MapTensor>& tensors) {
  std::string table = "<table>\n<tr><th>tensor</th><th>scheme</th><th>parameters</th><th>bytes</th><th>bits / weight</th></tr>\n";
  for (const MapTensor& t : tensors)
    table += "<tr><td>" + xml_escape(t.tensor) + "</td><td>" + xml_escape(t.scheme) + "</td><td>" +
             std::to_string(t.params) + "</td><td>" + std::to_string(t.bytes) + "</td><td>" +
             num(t.params > 0 ? 8.0 * static_cast<double>(t.bytes) / static_cast<double>(t.params) : 0.0, 3) +
             "</td></tr>\n";
  table += "</table>\n";
  return html_page(title, {quant_map_svg(title, tensors, false)}, table);
}

}  // namespace quanta::report
