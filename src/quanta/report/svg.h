// A small SVG writer for quanta's pictures (the quantization map, the trade-off plots):
// self-contained documents, no plotting library at run time.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quanta::report {

// Text and attribute values with &, <, >, " and ' escaped.
std::string xml_escape(std::string_view s);

// A number as SVG wants it: fixed, at most `decimals` decimals, no trailing zeros.
std::string num(double v, int decimals = 2);

// Bytes as "1.23 GiB" / "4.56 MiB" / "789 B".
std::string human_bytes(double bytes);

// The document is built element by element; attributes are (name, value) pairs, values
// escaped here.
class Svg {
 public:
  using Attrs = std::vector<std::pair<std::string, std::string>>;
  Svg(double width, double height);

  void rect(double x, double y, double w, double h, const std::string& fill, const Attrs& extra = {},
            const std::string& title = "");
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1.0,
            const std::string& dash = "");
  void circle(double cx, double cy, double r, const std::string& fill, const Attrs& extra = {},
              const std::string& title = "");
  // anchor: "start" | "middle" | "end".
  void text(double x, double y, const std::string& s, double size = 11.0, const std::string& anchor = "start",
            const Attrs& extra = {});
  void polyline(const std::vector<std::pair<double, double>>& points, const std::string& stroke, double width = 1.5);
  // Groups: everything between open_group and close_group.
  void open_group(const Attrs& attrs);
  void close_group();

  // The whole document; with `standalone` the XML declaration comes first (an .svg file),
  // without it the <svg> element alone (inline in HTML).
  std::string str(bool standalone = true) const;

 private:
  static std::string attrs(const Attrs& a);
  double width_, height_;
  std::string body_;
};

// An HTML page around inline SVG pictures and a table, self-contained: the script only shows
// what the pointer is over (the elements' data-info attribute).
std::string html_page(const std::string& title, const std::vector<std::string>& svgs, const std::string& table_html);

// Writes a picture or page to `path`; errors name the file and the option that gave it.
void write_report(const std::string& path, const std::string& text, const char* option);

// The categorical palette (distinguishable on white, colour-blind aware), and greys for floats.
const std::string& palette(size_t i);

}  // namespace quanta::report
