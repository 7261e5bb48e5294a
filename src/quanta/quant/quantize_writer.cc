#include "quanta/quant/quantize_writer.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "quanta/core/error.h"
#include "quanta/core/json.h"
#include "quanta/core/mx.h"
#include "quanta/format/hf_config.h"
#include "quanta/format/safetensors.h"
#include "quanta/format/safetensors_writer.h"
#include "quanta/quant/quantized_linear.h"

namespace quanta::quant {

namespace fs = std::filesystem;

namespace {

constexpr const char* kWeightsFile = "quant_model_weights-00001-of-00001.safetensors";

bool is_float(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

// Row n of a float [N, K] tensor as f32.
void row_f32(const Tensor& w, int64_t n, std::vector<float>& out) {
  const int64_t K = w.dim(1);
  out.resize(static_cast<size_t>(K));
  convert_to_f32(w.dtype(), static_cast<const uint8_t*>(w.raw()) + n * dtype_bytes(w.dtype(), static_cast<size_t>(K)),
                 out.data(), static_cast<size_t>(K));
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) throw Error("cannot write", {.file = p.string()});
}

}  // namespace

QuantizeReport write_quantized_checkpoint(const std::string& in_dir, const std::string& out_dir,
                                          const QuantizeOptions& options) {
  std::string scheme;
  int64_t group = 0;
  if (options.method == "modelslim-w8a8-dynamic") scheme = "W8A8_DYNAMIC";
  else if (options.method == "modelslim-w4a4-dynamic") scheme = "W4A4_DYNAMIC";
  else if (options.method == "mxfp8") scheme = "W8A8_MXFP8", group = 32;
  else if (options.method == "mxfp4") scheme = "W4A4_MXFP4", group = 32;
  else if (options.method == "modelslim-w8a8")
    throw Error("modelslim-w8a8 (static activation scales) needs calibration on text, which quanta quantize does not "
                "do yet; use modelslim-w8a8-dynamic", {.field = "--method"});
  else
    throw Error("unknown method '" + options.method +
                    "' (known: modelslim-w8a8-dynamic, modelslim-w4a4-dynamic, mxfp8, mxfp4)", {.field = "--method"});
  if (fs::exists(fs::path(in_dir) / "quant_model_description.json"))
    throw Error("the input is already an msModelSlim checkpoint; quantize a float folder",
                {.file = (fs::path(in_dir) / "quant_model_description.json").string()});
  const format::ModelConfig config = format::load_model_config(in_dir);  // validates the architecture
  (void)config;
  auto source = format::open_safetensors(in_dir);
  fs::create_directories(out_dir);

  static const std::regex linear_re(R"(^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$)");
  QuantizeReport report;
  report.scheme = scheme;
  std::vector<format::PlannedTensor> plan;
  nlohmann::ordered_json desc = nlohmann::ordered_json::object();
  for (const std::string& name : source->names()) {
    const Tensor w = source->get(name);
    bool quantize = std::regex_match(name, linear_re);
    for (const auto& pat : options.ignored) quantize &= name.find(pat) == std::string::npos;
    if (!quantize) {
      plan.push_back({name, w.dtype(), w.shape(), [&source, name] { return source->get(name); }});
      desc[name] = "FLOAT";
      ++report.n_float;
      continue;
    }
    if (w.rank() != 2 || !is_float(w.dtype()))
      throw Error("expected a float [out, in] weight to quantize, found " + std::string(dtype_name(w.dtype())) + " " +
                      shape_str(w.shape()), {.file = source->file_of(name), .tensor = name});
    const int64_t N = w.dim(0), K = w.dim(1);
    if (group && K % group != 0)
      throw Error("in_features " + std::to_string(K) + " is not a multiple of 32, which " + scheme + " needs",
                  {.file = source->file_of(name), .tensor = name});
    const std::string prefix = name.substr(0, name.size() - 7);
    const format::TensorSource* src = source.get();
    ++report.n_quantized;
    if (group == 0) {
      const int qmax = scheme == "W8A8_DYNAMIC" ? 127 : 7;
      // Weights and scales come from the same per-row rounding, done once per tensor produced.
      auto quantize_rows = [src, name, N, K, qmax](Tensor* q, Tensor* s) {
        const Tensor w = src->get(name);
        std::vector<float> row;
        std::vector<int8_t> tmp(static_cast<size_t>(K));
        for (int64_t n = 0; n < N; ++n) {
          row_f32(w, n, row);
          const float sc = quantize_row_symmetric(row.data(), K, qmax, q ? q->data_mut<int8_t>() + n * K : tmp.data());
          if (s) s->data_mut<float>()[n] = sc;
        }
      };
      plan.push_back({name, DType::kI8, {N, K}, [=] {
                        Tensor q = Tensor::zeros(DType::kI8, {N, K});
                        quantize_rows(&q, nullptr);
                        return q;
                      }});
      plan.push_back({prefix + ".weight_scale", DType::kF32, {N, 1}, [=] {
                        Tensor s = Tensor::zeros(DType::kF32, {N, 1});
                        quantize_rows(nullptr, &s);
                        return s;
                      }});
      plan.push_back({prefix + ".weight_offset", DType::kF32, {N, 1}, [=] { return Tensor::zeros(DType::kF32, {N, 1}); }});
      for (const char* sfx : {".weight", ".weight_scale", ".weight_offset"}) desc[prefix + sfx] = scheme;
    } else {
      const bool fp8 = scheme == "W8A8_MXFP8";
      auto quantize_rows = [src, name, N, K, fp8](Tensor* q, Tensor* s) {
        const Tensor w = src->get(name);
        std::vector<float> row;
        std::vector<uint8_t> codes(static_cast<size_t>(K)), scales(static_cast<size_t>(K / 32));
        for (int64_t n = 0; n < N; ++n) {
          row_f32(w, n, row);
          mx_quantize_row(fp8 ? MxElem::kE4M3 : MxElem::kE2M1, row.data(), K, codes.data(), scales.data());
          if (q && fp8) std::copy(codes.begin(), codes.end(), q->data_mut<uint8_t>() + n * K);
          if (q && !fp8) mx_pack_e2m1(codes.data(), K, q->data_mut<uint8_t>() + n * (K / 2));
          if (s) std::copy(scales.begin(), scales.end(), s->data_mut<uint8_t>() + n * (K / 32));
        }
      };
      const DType wd = fp8 ? DType::kF8E4M3 : DType::kU8;
      const Shape ws = fp8 ? Shape{N, K} : Shape{N, K / 2};
      plan.push_back({name, wd, ws, [=] {
                        Tensor q = Tensor::zeros(wd, ws);
                        quantize_rows(&q, nullptr);
                        return q;
                      }});
      plan.push_back({prefix + ".weight_scale", DType::kU8, {N, K / 32}, [=] {
                        Tensor s = Tensor::zeros(DType::kU8, {N, K / 32});
                        quantize_rows(nullptr, &s);
                        return s;
                      }});
      for (const char* sfx : {".weight", ".weight_scale"}) desc[prefix + sfx] = scheme;
    }
    if (source->has(prefix + ".bias")) desc[prefix + ".bias"] = "FLOAT";  // copied by its own entry
  }
  if (report.n_quantized == 0)
    throw Error("no decoder Linear weight (model.layers.N.self_attn/mlp.*_proj.weight) to quantize",
                {.file = source->location()});
  desc["model_quant_type"] = scheme;
  desc["version"] = "1.0.0";
  desc["group_size"] = group;
  desc["metadata"] = nlohmann::ordered_json::object();

  const fs::path out(out_dir);
  format::write_safetensors((out / kWeightsFile).string(), plan, {{"format", "pt"}});
  nlohmann::ordered_json index = {{"metadata", nlohmann::ordered_json::object()}, {"weight_map", nlohmann::ordered_json::object()}};
  for (const auto& t : plan) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    report.bytes_out += dtype_bytes(t.dtype, static_cast<size_t>(n));
    index["weight_map"][t.name] = kWeightsFile;
  }
  index["metadata"]["total_size"] = report.bytes_out;
  write_text(out / format::SafetensorsCheckpoint::kModelSlimIndexName, index.dump(2) + "\n");
  write_text(out / "quant_model_description.json", desc.dump(4) + "\n");

  // config.json without quantization_config (as the AscendV1 saver does); the
  // tokenizer and other small text files as they are.
  const std::string cfg_path = (fs::path(in_dir) / "config.json").string();
  nlohmann::ordered_json cfg = parse_json<nlohmann::ordered_json>(format::read_text_file(cfg_path), {.file = cfg_path});
  cfg.erase("quantization_config");
  if (cfg.contains("text_config") && cfg["text_config"].is_object()) cfg["text_config"].erase("quantization_config");
  write_text(out / "config.json", cfg.dump(2) + "\n");
  for (const auto& e : fs::directory_iterator(in_dir)) {
    const std::string fname = e.path().filename().string(), ext = e.path().extension().string();
    if (!e.is_regular_file() || fname == "config.json" || fname.ends_with("index.json") ||
        fname.starts_with("quant_model_description"))
      continue;
    if (ext == ".json" || ext == ".txt" || ext == ".jinja" || ext == ".model")
      fs::copy_file(e.path(), out / fname, fs::copy_options::overwrite_existing);
  }
  return report;
}

}  // namespace quanta::quant
