#include "quanta/report/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace quanta::report {
namespace {

struct Scale {
  double lo = 0, hi = 1;
  bool log = false;
  double to_unit(double v) const {
    if (log) return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (v - lo) / (hi - lo);
  }
};

bool usable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

// The range of the values with a margin; ticks at 1-2-5 steps (linear) or 1-2-5 per decade (log).
Scale make_scale(std::vector<double> values, bool log, bool from_zero) {
  Scale s;
  s.log = log;
  values.erase(std::remove_if(values.begin(), values.end(), [&](double v) { return !usable(v, log); }), values.end());
  if (values.empty()) values = {log ? 1.0 : 0.0, log ? 10.0 : 1.0};
  double lo = *std::min_element(values.begin(), values.end()), hi = *std::max_element(values.begin(), values.end());
  if (log) {
    s.lo = std::pow(10.0, std::floor(std::log10(lo)));
    s.hi = std::pow(10.0, std::ceil(std::log10(hi)));
    if (s.hi <= s.lo) s.hi = s.lo * 10;
    return s;
  }
  if (from_zero && lo > 0) lo = 0;
  if (hi == lo) {
    hi += std::max(1.0, std::fabs(hi) * 0.1);
    lo -= from_zero && lo == 0 ? 0 : std::max(1.0, std::fabs(lo) * 0.1);
  }
  const double pad = (hi - lo) * 0.08;
  s.lo = from_zero && lo >= 0 ? lo : lo - pad;
  s.hi = hi + pad;
  return s;
}

std::vector<double> ticks(const Scale& s) {
  std::vector<double> out;
  if (s.log) {
    // 1-2-5 in each decade, or only the decades when there are more than four.
    const bool wide = s.hi / s.lo > 1e4;
    for (double d = s.lo; d <= s.hi * 1.0001; d *= 10)
      for (double m : {1.0, 2.0, 5.0})
        if ((!wide || m == 1.0) && d * m >= s.lo * 0.9999 && d * m <= s.hi * 1.0001) out.push_back(d * m);
    return out;
  }
  const double raw = (s.hi - s.lo) / 5.0;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (mag * m >= raw) {
      step = mag * m;
      break;
    }
  for (double t = std::ceil(s.lo / step) * step; t <= s.hi + step * 1e-9; t += step) out.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  return out;
}

std::string tick_label(double v) {
  const double a = std::fabs(v);
  if (a >= 1e6) return num(v / 1e6, 1) + "M";
  if (a >= 1e4) return num(v / 1e3, 0) + "k";
  if (a >= 100) return num(v, 0);
  if (a >= 1) return num(v, 2);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);  // 0.05, 0.0002, 1e-05: significant digits, never "0"
  return buf;
}

}  // namespace

bool wants_log(const std::vector<double>& values, double ratio) {
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    if (v <= 0) return false;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  return hi > 0 && lo < hi && hi / lo > ratio;
}

void draw_plot(Svg& svg, const Plot& plot, double x0, double y0, double w, double h) {
  constexpr double kLeft = 70, kRight = 24, kTop = 34, kBottom = 46;
  std::vector<double> xs, ys;
  for (const PlotSeries& s : plot.series)
    for (const PlotPoint& p : s.points) {
      xs.push_back(p.x);
      ys.push_back(p.y);
    }
  for (const PlotReference& r : plot.references) ys.push_back(r.y);
  const Scale sx = make_scale(xs, plot.x.log, plot.x.from_zero), sy = make_scale(ys, plot.y.log, plot.y.from_zero);
  const double px = x0 + kLeft, py = y0 + kTop, pw = w - kLeft - kRight, ph = h - kTop - kBottom;
  auto X = [&](double v) { return px + pw * sx.to_unit(v); };
  auto Y = [&](double v) { return py + ph * (1.0 - sy.to_unit(v)); };

  svg.text(x0 + 8, y0 + 20, plot.title, 14, "start", {{"font-weight", "bold"}});
  svg.rect(px, py, pw, ph, "#fafafa", {{"stroke", "#cccccc"}});
  for (double t : ticks(sx)) {
    svg.line(X(t), py, X(t), py + ph, "#e4e4e4");
    svg.text(X(t), py + ph + 15, tick_label(t), 10, "middle");
  }
  for (double t : ticks(sy)) {
    svg.line(px, Y(t), px + pw, Y(t), "#e4e4e4");
    svg.text(px - 6, Y(t) + 3.5, tick_label(t), 10, "end");
  }
  svg.text(px + pw / 2, y0 + h - 8, plot.x.title + (plot.x.log ? " (log scale)" : ""), 11, "middle");
  svg.text(x0 + 14, py + ph / 2, plot.y.title + (plot.y.log ? " (log scale)" : ""), 11, "middle",
           {{"transform", "rotate(-90 " + num(x0 + 14) + " " + num(py + ph / 2) + ")"}});
  for (const PlotReference& r : plot.references) {
    if (!usable(r.y, plot.y.log)) continue;
    svg.line(px, Y(r.y), px + pw, Y(r.y), "#555555", 1, "5,4");
    svg.text(px + 6, Y(r.y) - 4, r.label, 10, "start", {{"fill", "#555555"}, {"class", "reference"}});
  }
  // Point labels move down or up a line where they would overprint one already placed.
  std::vector<std::pair<double, double>> placed;
  auto label_y = [&](double x, double y, size_t chars) {
    const double w = 6.0 * static_cast<double>(chars);
    for (double dy : {-6.0, 12.0, -18.0, 24.0, -30.0, 36.0}) {
      const double ly = y + dy;
      bool clear = true;
      for (const auto& [px2, py2] : placed)
        if (std::fabs(py2 - ly) < 11 && x < px2 + w && px2 < x + w) clear = false;
      if (clear) {
        placed.emplace_back(x, ly);
        return ly;
      }
    }
    placed.emplace_back(x, y - 6);
    return y - 6;
  };
  for (size_t si = 0; si < plot.series.size(); ++si) {
    const PlotSeries& s = plot.series[si];
    const std::string& c = palette(si);
    std::vector<PlotPoint> pts;
    for (const PlotPoint& p : s.points)
      if (usable(p.x, plot.x.log) && usable(p.y, plot.y.log)) pts.push_back(p);
    if (s.line) {
      std::sort(pts.begin(), pts.end(), [](const PlotPoint& a, const PlotPoint& b) { return a.x < b.x; });
      std::vector<std::pair<double, double>> line;
      for (const PlotPoint& p : pts) line.emplace_back(X(p.x), Y(p.y));
      svg.polyline(line, c);
    }
    for (const PlotPoint& p : pts) {
      svg.open_group({{"class", "point"}, {"data-series", s.name}, {"data-label", p.label}, {"data-x", num(p.x, 6)},
                      {"data-y", num(p.y, 6)}, {"data-info", p.info}});
      svg.circle(X(p.x), Y(p.y), 4.5, c, {{"stroke", "#ffffff"}, {"stroke-width", "1"}}, p.info);
      if (!p.label.empty())
        svg.text(X(p.x) + 7, label_y(X(p.x) + 7, Y(p.y), p.label.size()), p.label, 10, "start", {{"fill", "#333333"}});
      svg.close_group();
    }
  }
  if (plot.series.size() > 1)
    for (size_t si = 0; si < plot.series.size(); ++si) {
      const double lx = px + 10 + 130 * static_cast<double>(si % 4), ly = py + 14 + 16 * static_cast<double>(si / 4);
      svg.circle(lx, ly - 4, 4.5, palette(si));
      svg.text(lx + 9, ly, plot.series[si].name, 10.5, "start", {{"class", "series"}});
    }
}

}  // namespace quanta::report
