// `quanta report`: the size-quality-speed trade-off of quantization schemes, drawn from the
// JSON that `quanta bench --json` and `quanta perplexity [--kl-divergence-base] --json` write,
// and the serving curves from bench/serving/run.py's JSON.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "quanta/cli/commands.h"
#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/format/hf_config.h"
#include "quanta/report/plot.h"
#include "quanta/report/svg.h"

namespace quanta::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using report::human_bytes;
using report::num;

// One scheme's run: a model file or folder, what bench and perplexity said of it.
struct Run {
  std::string model;
  std::string name;
  double size = -1;  // bytes of weights (bench's model_size, else the files on disk)
  double ppl = NAN, ppl_err = NAN, kld = NAN, kld_err = NAN;
  std::string kl_base;
  double ppl_base = NAN;
  std::map<std::string, double> speed;  // "pp512", "tg128" -> tokens/s
};

struct ServingRow {
  double concurrency = 0, throughput = 0, ttft_p50 = NAN, ttft_p99 = NAN, itl_p50 = NAN, itl_p99 = NAN;
};

struct ReportOptions {
  std::vector<std::string> inputs;
  std::vector<std::string> labels;  // MODEL=NAME
  std::string svg, html, title = "quantization schemes: size, quality, speed";
};

std::string default_name(const std::string& model) {
  fs::path p(model);
  if (!p.has_filename()) p = p.parent_path();
  return p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

double disk_size(const std::string& model) {
  std::error_code ec;
  if (fs::is_regular_file(model, ec)) return static_cast<double>(fs::file_size(model, ec));
  double total = 0;
  if (fs::is_directory(model, ec))
    for (const auto& e : fs::directory_iterator(model, ec))
      if (e.is_regular_file() && (e.path().extension() == ".safetensors" || e.path().extension() == ".gguf"))
        total += static_cast<double>(e.file_size());
  return total > 0 ? total : -1;
}

// A number, or the mean of {mean, err}; `err` gets the error when there is one.
double number(const json& j, const std::string& file, const char* field, double* err = nullptr) {
  if (j.is_number()) return j.get<double>();
  if (j.is_object() && j.contains("mean") && j["mean"].is_number()) {
    if (err && j.contains("err") && j["err"].is_number()) *err = j["err"].get<double>();
    return j["mean"].get<double>();
  }
  throw Error("is not a number (or {mean, err})", {.file = file, .field = field});
}

std::string string_field(const json& j, const std::string& file, const char* field) {
  if (!j.contains(field) || !j[field].is_string()) throw Error("missing or not a string", {.file = file, .field = field});
  return j[field].get<std::string>();
}

struct Inputs {
  std::vector<Run> runs;  // in order of first appearance
  std::vector<ServingRow> serving;
  // The run of `model`; a named one (a collection's key) also by its name, since one model can
  // be run several ways (online quantization of a float folder).
  Run& run(const std::string& model, const std::string& label) {
    for (Run& r : runs)
      if (r.model == model && (label.empty() || r.name == label)) return r;
    runs.push_back(Run{model, label.empty() ? default_name(model) : label});
    return runs.back();
  }
};

// One result (bench, perplexity, serving) or a collection of them: an object of results by
// scheme name (bench/quant/quality.json), whose keys name the points.
void read_value(const json& j, const std::string& file, const std::string& label, bool top, Inputs& in) {
  if (top && j.is_object() && !j.contains("ppl")) {
    bool any = false;
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.value().is_object() || it.value().is_array()) {
        read_value(it.value(), file, it.key(), false, in);
        any = true;
      }
    if (any) return;
  }
  if (j.is_array() && !j.empty() && j[0].is_object() && j[0].contains("concurrency")) {
    for (const json& row : j) {
      if (!row.is_object()) throw Error("serving rows must be objects", {.file = file});
      ServingRow r;
      r.concurrency = number(row.value("concurrency", json()), file, "concurrency");
      r.throughput = number(row.value("output_tokens_per_s", json()), file, "output_tokens_per_s");
      auto opt = [&](const char* k, double& v) {
        if (row.contains(k) && row[k].is_number()) v = row[k].get<double>();
      };
      opt("ttft_p50_s", r.ttft_p50);
      opt("ttft_p99_s", r.ttft_p99);
      opt("itl_p50_s", r.itl_p50);
      opt("itl_p99_s", r.itl_p99);
      in.serving.push_back(r);
    }
    return;
  }
  if (j.is_array()) {  // quanta bench --json
    for (const json& row : j) {
      if (!row.is_object()) throw Error("bench results must be objects", {.file = file});
      Run& r = in.run(string_field(row, file, "model_filename"), label);
      if (row.contains("model_size")) r.size = number(row["model_size"], file, "model_size");
      const double pp = number(row.value("n_prompt", json(0)), file, "n_prompt");
      const double tg = number(row.value("n_gen", json(0)), file, "n_gen");
      const std::string test = pp > 0 ? "pp" + num(pp, 0) : "tg" + num(tg, 0);
      r.speed[test] = number(row.value("avg_ts", json()), file, "avg_ts");
    }
    return;
  }
  if (j.is_object() && j.contains("ppl")) {  // quanta perplexity --json (with or without a KL base)
    Run& r = in.run(string_field(j, file, "model"), label);
    r.ppl = number(j["ppl"], file, "ppl", &r.ppl_err);
    if (j.contains("ppl_err") && j["ppl_err"].is_number()) r.ppl_err = j["ppl_err"].get<double>();
    if (j.contains("kld")) r.kld = number(j["kld"], file, "kld", &r.kld_err);
    if (j.contains("ppl_base")) r.ppl_base = number(j["ppl_base"], file, "ppl_base");
    if (j.contains("kl_divergence_base") && j["kl_divergence_base"].is_string())
      r.kl_base = j["kl_divergence_base"].get<std::string>();
    return;
  }
  throw Error("is not the JSON of quanta bench, quanta perplexity or bench/serving/run.py", {.file = file});
}

void read_input(const std::string& file, Inputs& in) {
  read_value(parse_json(format::read_text_file(file), {.file = file}), file, "", true, in);
}

std::string info_of(const Run& r) {
  std::string s = r.name + ": " + (r.size > 0 ? human_bytes(r.size) : std::string("size unknown"));
  if (std::isfinite(r.ppl)) s += ", PPL " + num(r.ppl, 3) + (std::isfinite(r.ppl_err) ? " +/- " + num(r.ppl_err, 3) : "");
  if (std::isfinite(r.kld)) s += ", KLD " + num(r.kld, 5);
  for (const auto& [t, v] : r.speed) s += ", " + t + " " + num(v, 1) + " t/s";
  return s;
}

std::vector<report::Plot> scheme_plots(const Inputs& in) {
  using report::PlotPoint;
  std::vector<report::Plot> plots;
  double max_size = 0;
  for (const Run& r : in.runs) max_size = std::max(max_size, r.size);
  const bool gib = max_size >= 1024.0 * 1024 * 1024;
  const double unit = gib ? 1024.0 * 1024 * 1024 : 1024.0 * 1024;
  const std::string size_title = std::string("weights (") + (gib ? "GiB" : "MiB") + ")";
  // Quality: perplexity, with the float model's as a reference line, and the KL divergence to the
  // float model for the runs that measured it.
  for (const bool kld : {false, true}) {
    report::Plot p;
    p.title = kld ? "size against KL divergence to the float model" : "size against perplexity";
    p.x = {size_title};
    p.y = {kld ? "KL divergence (mean)" : "perplexity", false, false};
    report::PlotSeries s{kld ? "KL divergence" : "perplexity"};
    std::vector<double> ys;
    for (const Run& r : in.runs) {
      const double y = kld ? r.kld : r.ppl;
      if (!std::isfinite(y) || r.size <= 0) continue;
      s.points.push_back({r.size / unit, y, r.name, info_of(r)});
      ys.push_back(y);
    }
    if (s.points.empty()) continue;
    p.y.log = report::wants_log(ys);
    if (!kld)
      for (const Run& r : in.runs)
        if (std::isfinite(r.ppl_base)) {
          p.references.push_back({r.ppl_base, "float model: PPL " + num(r.ppl_base, 2)});
          break;
        }
    p.series.push_back(std::move(s));
    plots.push_back(std::move(p));
  }
  std::vector<std::string> tests;
  for (const Run& r : in.runs)
    for (const auto& [t, v] : r.speed)
      if (std::find(tests.begin(), tests.end(), t) == tests.end()) tests.push_back(t);
  if (!tests.empty()) {
    report::Plot p;
    p.title = "size against speed";
    p.x = {size_title};
    p.y = {"tokens / s"};
    std::vector<double> ys;
    for (const std::string& t : tests) {
      report::PlotSeries s{t};
      for (const Run& r : in.runs) {
        auto it = r.speed.find(t);
        if (it == r.speed.end() || r.size <= 0) continue;
        s.points.push_back({r.size / unit, it->second, r.name, info_of(r)});
        ys.push_back(it->second);
      }
      p.series.push_back(std::move(s));
    }
    p.y.log = report::wants_log(ys);
    plots.push_back(std::move(p));
  }
  return plots;
}

std::vector<report::Plot> serving_plots(const std::vector<ServingRow>& rows) {
  std::vector<report::Plot> plots;
  if (rows.empty()) return plots;
  report::Plot tp;
  tp.title = "serving: aggregate output throughput";
  tp.x = {"concurrent streams"};
  tp.y = {"output tokens / s"};
  report::PlotSeries s{"throughput", {}, true};
  for (const ServingRow& r : rows)
    s.points.push_back({r.concurrency, r.throughput, num(r.throughput, 1),
                        num(r.concurrency, 0) + " streams: " + num(r.throughput, 2) + " output tokens/s"});
  tp.series.push_back(std::move(s));
  plots.push_back(std::move(tp));
  report::Plot lat;
  lat.title = "serving: latency percentiles";
  lat.x = {"concurrent streams"};
  lat.y = {"seconds"};
  std::vector<double> ys;
  auto series = [&](const char* name, double ServingRow::*field) {
    report::PlotSeries ps{name, {}, true};
    for (const ServingRow& r : rows)
      if (std::isfinite(r.*field)) {
        ps.points.push_back({r.concurrency, r.*field, "",
                             std::string(name) + " at " + num(r.concurrency, 0) + " streams: " + num(r.*field * 1e3, 1) + " ms"});
        ys.push_back(r.*field);
      }
    if (!ps.points.empty()) lat.series.push_back(std::move(ps));
  };
  series("TTFT p50", &ServingRow::ttft_p50);
  series("TTFT p99", &ServingRow::ttft_p99);
  series("ITL p50", &ServingRow::itl_p50);
  series("ITL p99", &ServingRow::itl_p99);
  lat.y.log = report::wants_log(ys);
  if (!lat.series.empty()) plots.push_back(std::move(lat));
  return plots;
}

std::string table_html(const Inputs& in) {
  using report::xml_escape;
  std::string t;
  if (!in.runs.empty()) {
    std::vector<std::string> tests;
    for (const Run& r : in.runs)
      for (const auto& [k, v] : r.speed)
        if (std::find(tests.begin(), tests.end(), k) == tests.end()) tests.push_back(k);
    t += "<table>\n<tr><th>scheme</th><th>model</th><th>weights</th><th>PPL</th><th>KLD</th>";
    for (const std::string& k : tests) t += "<th>" + xml_escape(k) + " t/s</th>";
    t += "</tr>\n";
    for (const Run& r : in.runs) {
      t += "<tr><td>" + xml_escape(r.name) + "</td><td>" + xml_escape(r.model) + "</td><td>" +
           (r.size > 0 ? report::human_bytes(r.size) : "-") + "</td><td>" + (std::isfinite(r.ppl) ? num(r.ppl, 3) : "-") +
           "</td><td>" + (std::isfinite(r.kld) ? num(r.kld, 5) : "-") + "</td>";
      for (const std::string& k : tests) {
        auto it = r.speed.find(k);
        t += "<td>" + (it == r.speed.end() ? std::string("-") : num(it->second, 2)) + "</td>";
      }
      t += "</tr>\n";
    }
    t += "</table>\n";
  }
  if (!in.serving.empty()) {
    t += "<table>\n<tr><th>streams</th><th>output t/s</th><th>TTFT p50 ms</th><th>TTFT p99 ms</th><th>ITL p50 ms</th>"
         "<th>ITL p99 ms</th></tr>\n";
    auto ms = [](double v) { return std::isfinite(v) ? num(v * 1e3, 1) : std::string("-"); };
    for (const ServingRow& r : in.serving)
      t += "<tr><td>" + num(r.concurrency, 0) + "</td><td>" + num(r.throughput, 2) + "</td><td>" + ms(r.ttft_p50) +
           "</td><td>" + ms(r.ttft_p99) + "</td><td>" + ms(r.itl_p50) + "</td><td>" + ms(r.itl_p99) + "</td></tr>\n";
    t += "</table>\n";
  }
  return t;
}

std::string plots_svg(const std::vector<report::Plot>& plots, bool standalone) {
  constexpr double kW = 1000, kH = 420;
  report::Svg svg(kW, kH * static_cast<double>(plots.size()));
  for (size_t i = 0; i < plots.size(); ++i) report::draw_plot(svg, plots[i], 0, kH * static_cast<double>(i), kW, kH);
  return svg.str(standalone);
}

int run_report(const ReportOptions& o) {
  if (o.inputs.empty()) throw Error("give the JSON files: quanta report FILE... --svg OUT / --html OUT");
  if (o.svg.empty() && o.html.empty()) throw Error("nothing to write: give --svg FILE and/or --html FILE");
  Inputs in;
  for (const std::string& f : o.inputs) read_input(f, in);
  for (const std::string& l : o.labels) {
    const size_t eq = l.rfind('=');
    if (eq == std::string::npos || eq == 0) throw Error("expected MODEL=NAME, got '" + l + "'", {.field = "--label"});
    bool found = false;
    for (Run& r : in.runs)
      if (r.model == l.substr(0, eq)) {
        r.name = l.substr(eq + 1);
        found = true;
      }
    if (!found) throw Error("names no model of the inputs: '" + l.substr(0, eq) + "'", {.field = "--label"});
  }
  for (Run& r : in.runs) {
    if (r.size <= 0) r.size = disk_size(r.model);
    if (r.size <= 0)
      std::fprintf(stderr, "quanta report: %s (%s): no bench result and no files on disk to size it; not plotted\n",
                   r.name.c_str(), r.model.c_str());
  }
  std::vector<report::Plot> plots = scheme_plots(in);
  for (report::Plot& p : serving_plots(in.serving)) plots.push_back(std::move(p));
  if (plots.empty()) throw Error("the inputs hold nothing to plot (no perplexity, speed or serving rows)");
  if (!o.svg.empty()) report::write_report(o.svg, plots_svg(plots, true), "--svg");
  if (!o.html.empty())
    report::write_report(o.html, report::html_page(o.title, {plots_svg(plots, false)}, table_html(in)), "--html");
  return 0;
}

}  // namespace

Command add_report(CLI::App& app) {
  auto o = std::make_shared<ReportOptions>();
  CLI::App* sub = app.add_subcommand("report", "Plot schemes' size against quality and speed, or serving curves, from JSON results.");
  sub->footer(
      "Inputs (any mix, one scheme per model path):\n"
      "  quanta bench --json                     tokens/s per test (pp512, tg128) and the weights' size\n"
      "  quanta perplexity --json                perplexity\n"
      "  quanta perplexity --kl-divergence-base  perplexity and KL divergence to the float model\n"
      "  bench/serving/run.py's results JSON     throughput and TTFT / ITL percentiles per concurrency\n"
      "  an object of any of these by name       e.g. bench/quant/quality.json: the keys name the points\n"
      "A model with no bench result is sized from its files on disk. Perplexity is plotted with the float\n"
      "model's as a reference line (from --kl-divergence runs), and KL divergence where it was measured.");
  sub->add_option("inputs", o->inputs, "JSON files")->required();
  sub->add_option("--svg", o->svg, "Write the plots as one SVG file");
  sub->add_option("--html", o->html, "Write the plots and a table of the numbers as an HTML page");
  sub->add_option("--label", o->labels, "Name a model's points: MODEL=NAME (default: the file or folder name)");
  sub->add_option("--title", o->title, "Title of the HTML page")->capture_default_str();
  return [o] { return run_report(*o); };
}

}  // namespace quanta::cli
