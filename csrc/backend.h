// What a backend (cpu/, cuda/) gives the shared algorithm of ops.cpp: its
// element-wise passes, all built on the bodies of kernels/, and the policies
// that differ between devices (column dtype, chunk size, parallel chunks).
// A new backend fills in one Backend and registers it with
// BackendOps<its_backend>::register_impls (ops.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "config.h"
#include "kernels/geometry.h"

namespace torch_tconv {

using Geometry = ConvGeometry<int64_t>;

// Tensors are contiguous unless said otherwise; `out`-style arguments are
// written in full. Column buffers have the layout documented in
// kernels/element_bodies.h (kernels/pixel_bodies.h for the channels-last
// passes), in the dtype given by column_dtype. `config` is the calling op's snapshot (index
// width, CPU row or element bodies).
struct Backend {
  // out (N, C_out, out...) = col2im(cols) + bias.
  void (*col2im)(const at::Tensor& cols, const std::optional<at::Tensor>& bias,
                 const at::Tensor& out, const Geometry& g, const Config& config);
  // Adds col2im(cols) of a window of one sample's input rows (g is the
  // window's geometry, see for_each_chunk) to out (1, C_out, out...), in the
  // op-math dtype, visiting only the output rows the window reaches (see
  // window_reach). Null where the backend does not split samples (then one
  // sample is the smallest chunk).
  void (*col2im_window)(const at::Tensor& cols, const at::Tensor& out, const Geometry& g,
                        const Config& config);
  // cols = im2col(grad_output (N, C_out, out...)).
  void (*im2col)(const at::Tensor& grad_output, const at::Tensor& cols,
                 const Geometry& g, const Config& config);
  // The same three passes for channels-last activations, over position-major
  // column buffers (kernels/pixel_bodies.h); out, grad_output and the window
  // sums are channels-last. Null where the backend has none: channels-last
  // tensors are then made contiguous for the passes above.
  void (*col2im_channels_last)(const at::Tensor& cols, const std::optional<at::Tensor>& bias,
                               const at::Tensor& out, const Geometry& g, const Config& config);
  void (*col2im_window_channels_last)(const at::Tensor& cols, const at::Tensor& out,
                                      const Geometry& g, const Config& config);
  void (*im2col_channels_last)(const at::Tensor& grad_output, const at::Tensor& cols,
                               const Geometry& g, const Config& config);
  // col2im from position-major columns into a contiguous out (N, C_out,
  // out...) + bias, an output row of every channel at a time. Null where the
  // backend has none (then contiguous activations keep channel-major columns).
  void (*col2im_position_major_rows)(const at::Tensor& cols,
                                     const std::optional<at::Tensor>& bias,
                                     const at::Tensor& out, const Geometry& g,
                                     const Config& config);
  // Direct path (no GEMM, no column buffer).
  void (*direct_forward)(const at::Tensor& input, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias,
                         const at::Tensor& out, const Geometry& g, const Config& config);
  void (*direct_input_grad)(const at::Tensor& grad_output, const at::Tensor& weight,
                            const at::Tensor& grad_input, const Geometry& g,
                            const Config& config);
  void (*direct_weight_grad)(const at::Tensor& input, const at::Tensor& grad_output,
                             const at::Tensor& grad_weight, const Geometry& g,
                             const Config& config);
  // Both gradients of the direct path in one call, sharing what they both
  // read; null: direct_input_grad and direct_weight_grad run one after the
  // other.
  void (*direct_backward)(const at::Tensor& grad_output, const at::Tensor& input,
                          const at::Tensor& weight, const at::Tensor& grad_input,
                          const at::Tensor& grad_weight, const Geometry& g,
                          const Config& config);
  // The implicit GEMMs (kernels/implicit_gemm.h; no column buffer), each
  // writing its whole result: the forward with bias, one GEMM per output
  // phase; the input gradient; the weight gradient. Null where the backend
  // has none (the GEMM path runs instead).
  void (*phase_forward)(const at::Tensor& input, const at::Tensor& weight,
                        const std::optional<at::Tensor>& bias, const at::Tensor& out,
                        const Geometry& g, const Config& config);
  void (*implicit_input_grad)(const at::Tensor& grad_output, const at::Tensor& weight,
                              const at::Tensor& grad_input, const Geometry& g,
                              const Config& config);
  void (*implicit_weight_grad)(const at::Tensor& input, const at::Tensor& grad_output,
                               const at::Tensor& grad_weight, const Geometry& g,
                               const Config& config);
  // Whether algorithm "auto" runs the forward of this problem through
  // phase_forward rather than GEMM + col2im (channels_last: the input is,
  // and so the output). Null: never.
  bool (*prefers_phase_forward)(const Geometry& g, at::ScalarType dtype, bool channels_last);
  // Both gradients of the phase path in one call, sharing what they both
  // read (the CPU's blocked tiles: one channels-last copy of grad_output);
  // either result may be undefined, not computed. Null: implicit_input_grad
  // and implicit_weight_grad run one after the other.
  void (*phase_backward)(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& weight, const at::Tensor& grad_input,
                         const at::Tensor& grad_weight, const Geometry& g, const Config& config);
  // Whether algorithm "auto" computes this problem's gradients through the
  // phase path rather than im2col + GEMMs (channels_last: grad_output is).
  // Null: never.
  bool (*prefers_phase_gradients)(const Geometry& g, at::ScalarType dtype, bool channels_last);
  // c (G, M, N) = [c +] a (G, M, K) · b (G, K, N), any strides, in float32
  // or float64, through the backend's own GEMM; null where it has none
  // (ATen's bmm runs). prefers_blocked_gemm: whether Config::cpu_gemm's
  // kAuto runs it, on this processor, for a forward's product of these M, N
  // and K; prefers_blocked_gradient_gemm: the same for the gradients'
  // products; null: never.
  void (*blocked_gemm)(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c,
                       bool accumulate);
  bool (*prefers_blocked_gemm)(int64_t m, int64_t n, int64_t k);
  bool (*prefers_blocked_gradient_gemm)(int64_t m, int64_t n, int64_t k);
  // Whether kAuto runs the gradients' float32 products of these sizes
  // through oneDNN's matmul (gemm.h: onednn_product) instead; null: never.
  bool (*prefers_onednn_gradient_gemm)(int64_t m, int64_t n, int64_t k);
  // out (C_out,) = grad_output (N, C_out, ...), contiguous or channels-last,
  // summed per channel in the op-math dtype. Null: ATen's sum does it.
  void (*bias_grad)(const at::Tensor& grad_output, const at::Tensor& out);
  // The dtype of the GEMM operands and column buffers for inputs of `dtype`:
  // the input dtype, whose GEMMs accumulate in float32 (cuBLAS, oneDNN), or
  // for float16/bfloat16 on a CPU without fast kernels for them, float32.
  at::ScalarType (*column_dtype)(at::ScalarType dtype, const Config& config);
  // Preferred size of one chunk's column buffer: small enough on the CPU for
  // the GEMM's output to be read back from cache, large on the GPU where
  // bigger GEMMs and fewer launches win. Capped by Config::column_budget_bytes.
  int64_t column_chunk_bytes;
  // The forward's chunks hold the columns of at least this many input
  // positions (whole samples or windows), over column_chunk_bytes up to 4x
  // it; 0: no minimum. Every chunk's GEMM packs the whole weight again, so a
  // layer with few positions per sample and a large weight (a VAE or DCGAN
  // layer at 16x16 or less) spends more on packing than on arithmetic when
  // a chunk holds a sample or two.
  int64_t forward_chunk_positions;
  // Whether chunks that write disjoint outputs may run in parallel, one per
  // thread with serial GEMMs (the CPU), rather than one after another with
  // parallel GEMMs and element passes (the GPU).
  bool parallel_chunks;
  // Waits for the device's queued work (benchmark mode's timing); null where
  // calls return when done (the CPU).
  void (*synchronize)();
  // Whether the current stream is capturing a CUDA graph, when nothing may
  // synchronize; null where there are no graphs.
  bool (*capturing)();
  // Whether the forward GEMM wants the transposed weight copied contiguous:
  // oneDNN's bfloat16 GEMM runs 4x slower on a transposed view, while cuBLAS
  // takes the transpose as a flag, and the copy would cost a kernel launch.
  bool contiguous_forward_weight;
  // For diagnostics and tests: "cuda", or the CPU variant's namespace
  // ("cpu_base", "cpu_avx2", "cpu_avx512"; see cpu/cpu_isa.h).
  const char* name;
};

// Calls f(geometry) with the geometry as a KernelGeometry in 32-bit indices
// where the config allows them and every tensor fits, else 64-bit, its
// divisors computed for this launch.
template <typename F>
void dispatch_index_type(const Geometry& g, const Config& config, const F& f) {
  if (config.int32_indices && g.fits_int32()) {
    f(KernelGeometry<int32_t>(g.template as<int32_t>()));
  } else {
    f(KernelGeometry<int64_t>(g));
  }
}

}  // namespace torch_tconv
