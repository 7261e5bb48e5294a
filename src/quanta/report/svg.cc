#include "quanta/report/svg.h"

#include <array>
#include <cmath>
#include <cstdio>

#include "quanta/core/error.h"

namespace quanta::report {

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        // Control characters are not allowed in XML 1.0 (tab and newline are).
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') out += ' ';
        else out += c;
    }
  }
  return out;
}

std::string num(double v, int decimals) {
  if (!std::isfinite(v)) return "0";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s == "-0" ? "0" : s;
}

std::string human_bytes(double b) {
  char buf[64];
  if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.2f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

Svg::Svg(double width, double height) : width_(width), height_(height) {}

std::string Svg::attrs(const Attrs& a) {
  std::string out;
  for (const auto& [k, v] : a) out += " " + k + "=\"" + xml_escape(v) + "\"";
  return out;
}

void Svg::rect(double x, double y, double w, double h, const std::string& fill, const Attrs& extra,
               const std::string& title) {
  body_ += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(w) + "\" height=\"" + num(h) +
           "\" fill=\"" + xml_escape(fill) + "\"" + attrs(extra);
  body_ += title.empty() ? "/>\n" : "><title>" + xml_escape(title) + "</title></rect>\n";
}

void Svg::line(double x1, double y1, double x2, double y2, const std::string& stroke, double width,
               const std::string& dash) {
  body_ += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" + num(y2) +
           "\" stroke=\"" + xml_escape(stroke) + "\" stroke-width=\"" + num(width) + "\"";
  if (!dash.empty()) body_ += " stroke-dasharray=\"" + xml_escape(dash) + "\"";
  body_ += "/>\n";
}

void Svg::circle(double cx, double cy, double r, const std::string& fill, const Attrs& extra,
                 const std::string& title) {
  body_ += "<circle cx=\"" + num(cx) + "\" cy=\"" + num(cy) + "\" r=\"" + num(r) + "\" fill=\"" + xml_escape(fill) +
           "\"" + attrs(extra);
  body_ += title.empty() ? "/>\n" : "><title>" + xml_escape(title) + "</title></circle>\n";
}

void Svg::text(double x, double y, const std::string& s, double size, const std::string& anchor, const Attrs& extra) {
  body_ += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + num(size) + "\" text-anchor=\"" + anchor +
           "\"" + attrs(extra) + ">" + xml_escape(s) + "</text>\n";
}

void Svg::polyline(const std::vector<std::pair<double, double>>& points, const std::string& stroke, double width) {
  std::string p;
  for (const auto& [x, y] : points) p += (p.empty() ? "" : " ") + num(x) + "," + num(y);
  body_ += "<polyline points=\"" + p + "\" fill=\"none\" stroke=\"" + xml_escape(stroke) + "\" stroke-width=\"" +
           num(width) + "\"/>\n";
}

void Svg::open_group(const Attrs& a) { body_ += "<g" + attrs(a) + ">\n"; }
void Svg::close_group() { body_ += "</g>\n"; }

std::string Svg::str(bool standalone) const {
  std::string out = standalone ? "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" : "";
  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width_) + "\" height=\"" + num(height_) +
         "\" viewBox=\"0 0 " + num(width_) + " " + num(height_) +
         "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n";
  out += "<rect x=\"0\" y=\"0\" width=\"" + num(width_) + "\" height=\"" + num(height_) + "\" fill=\"#ffffff\"/>\n";
  return out + body_ + "</svg>\n";
}

std::string html_page(const std::string& title, const std::vector<std::string>& svgs, const std::string& table_html) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + xml_escape(title) +
      "</title>\n<style>\n"
      "body { font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; margin: 16px; color: #222; }\n"
      "#info { position: sticky; top: 0; background: #f4f4f4; padding: 6px 10px; min-height: 1.3em; "
      "font-size: 13px; border: 1px solid #ddd; }\n"
      "table { border-collapse: collapse; font-size: 13px; margin-top: 12px; }\n"
      "td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }\n"
      "td:first-child, th:first-child { text-align: left; }\n"
      "svg { display: block; margin-top: 12px; }\n"
      "</style>\n</head>\n<body>\n<h1 style=\"font-size: 18px\">" +
      xml_escape(title) + "</h1>\n<div id=\"info\">Point at a cell or a point for its details.</div>\n";
  for (const std::string& s : svgs) out += s;
  out += table_html;
  // The only script: the details of what the pointer is over, from data-info.
  out +=
      "<script>\n"
      "(function () {\n"
      "  var info = document.getElementById('info');\n"
      "  document.addEventListener('mouseover', function (e) {\n"
      "    var el = e.target.closest('[data-info]');\n"
      "    if (el) info.textContent = el.getAttribute('data-info');\n"
      "  });\n"
      "  document.body.setAttribute('data-ready', String(document.querySelectorAll('[data-info]').length));\n"
      "})();\n"
      "</script>\n</body>\n</html>\n";
  return out;
}

void write_report(const std::string& path, const std::string& text, const char* option) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error("cannot be written", {.file = path, .field = option});
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) throw Error("could not be written in full", {.file = path, .field = option});
}

const std::string& palette(size_t i) {
  // Okabe-Ito's colour-blind safe set, then Tableau's, for checkpoints with many schemes.
  static const std::array<std::string, 16> kColours = {
      "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#8C564B",
      "#4E79A7", "#F28E2B", "#59A14F", "#E15759", "#B07AA1", "#76B7B2", "#EDC948", "#9C755F"};
  return kColours[i % kColours.size()];
}

}  // namespace quanta::report
