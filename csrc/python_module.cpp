// The extension module torch_tconv._C. Importing it registers the ops (their
// TORCH_LIBRARY blocks live in the other translation units of the library)
// and exposes the shared shape arithmetic of validation.h to the
// Python fake kernels and modules, so that no copy of it exists in Python.
#include <torch/extension.h>

#include "autotune.h"
#include "config.h"
#include "gemm.h"
#include "cpu/cpu_isa.h"
#include "result_memory.h"
#include "validation.h"

namespace torch_tconv {
namespace {

// The names of an enum's values, for the string-valued knobs below; the
// first name is the default.
template <typename Enum, size_t N>
using EnumNames = std::pair<const char*, Enum>[N];

constexpr EnumNames<Algorithm, 4> kAlgorithmNames = {
    {"auto", Algorithm::kAuto}, {"gemm", Algorithm::kGemm}, {"direct", Algorithm::kDirect},
    {"phase", Algorithm::kPhase}};
constexpr EnumNames<ReducedPrecisionGemm, 3> kReducedPrecisionGemmNames = {
    {"auto", ReducedPrecisionGemm::kAuto},
    {"always", ReducedPrecisionGemm::kAlways},
    {"never", ReducedPrecisionGemm::kNever}};
constexpr EnumNames<CpuGemm, 4> kCpuGemmNames = {{"auto", CpuGemm::kAuto},
                                                  {"aten", CpuGemm::kAten},
                                                  {"blocked", CpuGemm::kBlocked},
                                                  {"onednn", CpuGemm::kOneDnn}};
constexpr EnumNames<TileVariant, 7> kTileVariantNames = {
    {"auto", TileVariant::kAuto},           {"scalar", TileVariant::kScalar},
    {"mma128x64", TileVariant::kMma128x64}, {"mma64x64", TileVariant::kMma64x64},
    {"mma64x32", TileVariant::kMma64x32},   {"mma32x16", TileVariant::kMma32x16},
    {"blocked", TileVariant::kBlocked}};

// The value called `name`; a ValueError naming `what` and the choices if none is.
template <typename Enum, size_t N>
Enum value_named(const EnumNames<Enum, N>& names, const std::string& name, const char* what) {
  std::string choices;
  for (size_t i = 0; i < N; ++i) {
    if (name == names[i].first) return names[i].second;
    choices += std::string(i == 0 ? "" : i + 1 == N ? " or " : ", ") + "'" + names[i].first + "'";
  }
  TORCH_CHECK_VALUE(false, what, " must be ", choices, ", got '", name, "'");
}

template <typename Enum, size_t N>
const char* name_of(const EnumNames<Enum, N>& names, Enum value) {
  for (const auto& entry : names) {
    if (entry.second == value) return entry.first;
  }
  return names[0].first;
}

// Whether the current cpu_isa's backend has the GEMM rule `rule`
// (Backend::prefers_blocked_gemm and the like) and it holds for these sizes.
using SizeRule = bool (*)(int64_t, int64_t, int64_t);
bool cpu_rule_holds(SizeRule Backend::*rule, int64_t m, int64_t n, int64_t k) {
  const SizeRule holds = cpu_backend_for(config_snapshot()).*rule;
  return holds != nullptr && holds(m, n, k);
}

}  // namespace
}  // namespace torch_tconv

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace tt = torch_tconv;
  using Ints = std::vector<int64_t>;
  using SymInts = std::vector<c10::SymInt>;
  m.doc() = "torch_tconv native extension: registers the torch_tconv ops.";
#ifdef TORCH_TCONV_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif

  m.def(
      "forward_output_shape",
      [](const at::Tensor& input, const at::Tensor& weight,
         const std::optional<at::Tensor>& bias, Ints stride, Ints padding,
         Ints output_padding, Ints dilation, int64_t groups,
         std::optional<SymInts> output_size) {
        at::OptionalSymIntArrayRef size;
        if (output_size) size = *output_size;
        return tt::forward_output_shape(
            input, weight, bias,
            tt::forward_params(stride, padding, output_padding, dilation, groups), size);
      },
      "Validates the forward's arguments and returns the output shape.");
  m.def(
      "input_grad_shape",
      [](const at::Tensor& grad_output, const at::Tensor& weight, SymInts input_size,
         Ints stride, Ints padding, Ints dilation, int64_t groups) {
        return tt::input_grad_shape(grad_output, weight, input_size,
                                    tt::gradient_params(stride, padding, dilation, groups));
      },
      "Validates the input-gradient op's arguments and returns its output shape.");
  m.def(
      "weight_grad_shape",
      [](const at::Tensor& input, const at::Tensor& grad_output, Ints kernel_size,
         Ints stride, Ints padding, Ints dilation, int64_t groups) {
        return tt::weight_grad_shape(input, grad_output, kernel_size,
                                     tt::gradient_params(stride, padding, dilation, groups));
      },
      "Validates the weight-gradient op's arguments and returns its output shape.");
  m.def(
      "backward_shapes",
      [](const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
         Ints stride, Ints padding, Ints dilation, int64_t groups) {
        return tt::backward_shapes(grad_output, input, weight,
                                   tt::gradient_params(stride, padding, dilation, groups));
      },
      "Validates the fused backward's arguments and returns the shapes of both gradients.");
  m.def(
      "padding_for_mode",
      [](int64_t spatial_dims, const std::string& mode, Ints kernel_size, Ints stride,
         Ints dilation) {
        return tt::padding_for_mode(tt::op_name(spatial_dims), mode, kernel_size, stride,
                                    dilation);
      },
      "The ops' (padding, output_padding) for TensorFlow's 'same' or 'valid' padding.");
  m.def("bias_grad_shape", &tt::bias_grad_shape,
        "Validates the bias-gradient op's argument and returns its output shape.");
  // The configuration, as torch_tconv.backends presents it: one dict read and
  // written whole, so that a change of several settings is one change.
  m.def("get_config", []() {
    const tt::Config c = tt::config_snapshot();
    py::dict d;
    d["algorithm"] = tt::name_of(tt::kAlgorithmNames, c.algorithm);
    d["column_budget_bytes"] = c.column_budget_bytes;
    d["int32_indices"] = c.int32_indices;
    d["cpu_row_kernels"] = c.cpu_row_kernels;
    d["cpu_reduced_precision_gemm"] =
        tt::name_of(tt::kReducedPrecisionGemmNames, c.cpu_reduced_precision_gemm);
    d["tile_variant"] = tt::name_of(tt::kTileVariantNames, c.tile_variant);
    d["benchmark"] = c.benchmark;
    d["cpu_isa"] = tt::name_of(tt::kCpuIsaNames, c.cpu_isa);
    d["cpu_gemm"] = tt::name_of(tt::kCpuGemmNames, c.cpu_gemm);
    d["cpu_huge_pages"] = c.cpu_huge_pages;
    return d;
  });
  m.def(
      "set_config",
      [](const std::string& algorithm, int64_t column_budget_bytes, bool int32_indices,
         bool cpu_row_kernels, const std::string& cpu_reduced_precision_gemm,
         const std::string& tile_variant, bool benchmark, const std::string& cpu_isa,
         const std::string& cpu_gemm, bool cpu_huge_pages) {
        TORCH_CHECK_VALUE(column_budget_bytes > 0,
                          "column_budget_bytes must be positive, got ", column_budget_bytes);
        tt::Config c;
        c.algorithm = tt::value_named(tt::kAlgorithmNames, algorithm, "algorithm");
        c.column_budget_bytes = column_budget_bytes;
        c.int32_indices = int32_indices;
        c.cpu_row_kernels = cpu_row_kernels;
        c.cpu_reduced_precision_gemm = tt::value_named(
            tt::kReducedPrecisionGemmNames, cpu_reduced_precision_gemm,
            "cpu_reduced_precision_gemm");
        c.tile_variant = tt::value_named(tt::kTileVariantNames, tile_variant, "tile_variant");
        c.benchmark = benchmark;
        c.cpu_isa = tt::value_named(tt::kCpuIsaNames, cpu_isa, "cpu_isa");
        tt::check_cpu_isa_supported(c.cpu_isa, "cpu_isa '" + cpu_isa + "'");
        c.cpu_gemm = tt::value_named(tt::kCpuGemmNames, cpu_gemm, "cpu_gemm");
        c.cpu_huge_pages = cpu_huge_pages;
        tt::set_config(c);
      },
      py::arg("algorithm"), py::arg("column_budget_bytes"), py::arg("int32_indices"),
      py::arg("cpu_row_kernels"), py::arg("cpu_reduced_precision_gemm"), py::arg("tile_variant"),
      py::arg("benchmark"), py::arg("cpu_isa"), py::arg("cpu_gemm"),
      py::arg("cpu_huge_pages"),
      "Replaces the whole configuration (see torch_tconv.backends).");
  m.def("supported_cpu_isas", &tt::supported_cpu_isa_names,
        "The compiled CPU launcher variants this processor runs, narrowest first.");
  m.def(
      "cpu_isa_in_use",
      []() {
        return tt::name_of(tt::kCpuIsaNames, tt::resolve_cpu_isa(tt::config_snapshot().cpu_isa));
      },
      "The CPU launcher variant that calls made now run (the current cpu_isa, 'auto' resolved).");
  m.def(
      "cpu_backend_name", []() { return std::string(tt::cpu_backend_for(tt::config_snapshot()).name); },
      "The name of the CPU Backend that calls made now run: the variant's namespace.");
  m.def(
      "set_machine_facts",
      [](bool bfloat16_gemm_fast, bool float16_gemm_fast) {
        tt::set_machine_facts({bfloat16_gemm_fast, float16_gemm_fast});
      },
      "Whether this CPU has AMX for bfloat16 and for float16 (set once, at import).");
  m.def(
      "benchmark_choices",
      []() {
        py::list result;
        for (const auto& [key, choice] : tt::autotune_choices()) {
          result.append(py::make_tuple(py::tuple(py::cast(key)),
                                       tt::name_of(tt::kAlgorithmNames, choice.algorithm),
                                       tt::name_of(tt::kTileVariantNames, choice.tile_variant)));
        }
        return result;
      },
      "Benchmark mode's choices: (key, algorithm, tile_variant) per timed shape key.");
  m.def("clear_benchmark_choices", &tt::clear_autotune_choices,
        "Forgets benchmark mode's choices: the next call of each key is timed again.");
  m.def("last_column_workspace_bytes", &tt::last_column_workspace_bytes,
        "Bytes of the column workspace that this thread's last GEMM-path call allocated.");
  m.def("last_columns_position_major", &tt::last_columns_position_major,
        "Whether this thread's last GEMM-path call ran on channels-last activations as they "
        "are, over position-major columns.");
  m.def(
      "whole_huge_pages",
      [](uint64_t begin, int64_t bytes) {
        const tt::PageRange r = tt::whole_huge_pages(static_cast<uintptr_t>(begin), bytes);
        return std::make_tuple(static_cast<uint64_t>(r.begin), static_cast<uint64_t>(r.end));
      },
      py::arg("begin"), py::arg("bytes"),
      "The (begin, end) of the whole 2 MiB pages inside [begin, begin + bytes) that "
      "cpu_huge_pages advises; (0, 0) where there is none.");
  m.def("last_gemm_blocked", &tt::last_gemm_blocked,
        "Whether a product ran through the register-blocked tiles (cpu_gemm) rather than "
        "ATen's bmm since this thread's last GEMM-path call began (for tests, one call at a "
        "time).");
  m.def(
      "blocked_gemm",
      [](const at::Tensor& a, const at::Tensor& b, const at::Tensor& out, bool accumulate) {
        TORCH_CHECK_VALUE(a.dim() == 3 && b.dim() == 3 && out.dim() == 3 &&
                              a.size(0) == b.size(0) && out.size(0) == a.size(0) &&
                              a.size(2) == b.size(1) && out.size(1) == a.size(1) &&
                              out.size(2) == b.size(2),
                          "blocked_gemm: a (G, M, K), b (G, K, N) and out (G, M, N) expected, got ",
                          a.sizes(), ", ", b.sizes(), " and ", out.sizes());
        TORCH_CHECK_VALUE(a.device().is_cpu() && a.scalar_type() == b.scalar_type() &&
                              a.scalar_type() == out.scalar_type() &&
                              (a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble),
                          "blocked_gemm: float32 or float64 CPU tensors of one dtype expected");
        const tt::Backend& backend = tt::cpu_backend_for(tt::config_snapshot());
        TORCH_CHECK(backend.blocked_gemm != nullptr, "blocked_gemm: this CPU variant has none");
        backend.blocked_gemm(a, b, out, accumulate);
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("accumulate"),
      "out = [out +] a @ b (batched) through the CPU's register-blocked tiles, in the current "
      "cpu_isa's variant (for tests and benchmarks).");
  m.def(
      "cpu_tiles_outrun_blas",
      []() {
        constexpr int64_t kLarge = int64_t(1) << 20;
        return tt::cpu_rule_holds(&tt::Backend::prefers_blocked_gemm, kLarge, kLarge, kLarge);
      },
      "Whether the current cpu_isa's register-blocked tiles outrun torch's BLAS on this "
      "processor (AVX-512 tiles on an AMD processor), which changes what 'auto' takes.");
  m.def(
      "blocked_gemm_preferred",
      [](int64_t m, int64_t n, int64_t k) {
        return tt::cpu_rule_holds(&tt::Backend::prefers_blocked_gemm, m, n, k);
      },
      py::arg("m"), py::arg("n"), py::arg("k"),
      "Whether cpu_gemm 'auto' runs a float32/float64 product of these sizes through the CPU's "
      "blocked tiles on this processor, with the current cpu_isa.");
  m.def("last_gemm_onednn", &tt::last_gemm_onednn,
        "Whether a product ran through oneDNN's matmul (cpu_gemm) since this thread's last "
        "GEMM-path call began (for tests, one call at a time).");
  m.def("onednn_gemm_available", &tt::onednn_gemm_available,
        "Whether torch has oneDNN's matmul (mkldnn::_linear_pointwise), which cpu_gemm "
        "'onednn' runs float32 products through.");
  m.def(
      "onednn_gradient_gemm_preferred",
      [](int64_t m, int64_t n, int64_t k) {
        return tt::onednn_gemm_available() &&
               tt::cpu_rule_holds(&tt::Backend::prefers_onednn_gradient_gemm, m, n, k);
      },
      py::arg("m"), py::arg("n"), py::arg("k"),
      "Whether cpu_gemm 'auto' runs a float32 gradient product of these sizes through "
      "oneDNN's matmul on this processor, with the current cpu_isa.");
  m.def(
      "blocked_gradient_gemm_preferred",
      [](int64_t m, int64_t n, int64_t k) {
        return tt::cpu_rule_holds(&tt::Backend::prefers_blocked_gradient_gemm, m, n, k);
      },
      py::arg("m"), py::arg("n"), py::arg("k"),
      "The same for a gradient's product: the blocked tiles also need full-width AVX-512 "
      "(AMD family 26 and later).");
}
