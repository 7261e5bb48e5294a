// Scatter and line plots for `quanta report`: size against quality and speed per scheme,
// serving throughput and latency per concurrency.
#pragma once

#include <string>
#include <vector>

#include "quanta/report/svg.h"

namespace quanta::report {

struct PlotPoint {
  double x = 0, y = 0;
  std::string label;  // drawn beside the point ("" for none)
  std::string info;   // the page's details line and the SVG title
};

struct PlotSeries {
  std::string name;
  std::vector<PlotPoint> points;
  bool line = false;  // join the points in x order
};

struct PlotAxis {
  std::string title;
  bool log = false;  // a log scale (every value must be > 0; others are left out)
  bool from_zero = true;  // a linear scale starts at 0 (sizes, speeds), else at the data
};

// A horizontal reference line (the float model's perplexity, say).
struct PlotReference {
  double y = 0;
  std::string label;
};

struct Plot {
  std::string title;
  PlotAxis x, y;
  std::vector<PlotSeries> series;
  std::vector<PlotReference> references;
};

// Draws `plot` into the box (x0, y0, w, h) of `svg`: axes with ticks, points, labels, a legend
// when there are several series.
void draw_plot(Svg& svg, const Plot& plot, double x0, double y0, double w, double h);

// True when the values span more than `ratio` and are all positive: a log scale reads better.
bool wants_log(const std::vector<double>& values, double ratio = 20.0);

}  // namespace quanta::report
