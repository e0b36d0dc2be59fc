#include "plan.h"

#include <ATen/OpMathType.h>

#include "gemm.h"

namespace torch_tconv {
namespace {

Path choose_path(const Backend& backend, const Problem& problem, at::ScalarType dtype,
                 const Config& config) {
  const Geometry& g = problem.geometry;
  switch (config.algorithm) {
    case Algorithm::kGemm:
      return Path::kGemm;
    case Algorithm::kDirect:
      return Path::kDirect;
    case Algorithm::kPhase:
      return backend.phase_forward != nullptr ? Path::kPhase : Path::kGemm;
    case Algorithm::kAuto:
      break;
  }
  // Depthwise-like layers: with one input channel per group the GEMM's inner
  // dimension is 1, so the column buffer costs more than the arithmetic.
  if (g.in_channels_per_group == 1) return Path::kDirect;
  if (problem.op == OpKind::kForward && blocked_tiles_allowed(config) &&
      backend.prefers_phase_forward != nullptr &&
      backend.prefers_phase_forward(g, dtype,
                                    problem.result_format != at::MemoryFormat::Contiguous)) {
    return Path::kPhase;
  }
  if (problem.op != OpKind::kForward && blocked_tiles_allowed(config) &&
      backend.prefers_phase_gradients != nullptr &&
      backend.prefers_phase_gradients(g, dtype,
                                      problem.result_format != at::MemoryFormat::Contiguous)) {
    return Path::kPhase;
  }
  return Path::kGemm;
}

// A contiguous forward whose output rows are short and whose channels are
// many: the channel-major col2im adds a few values per tap and row (8 per tap
// for a 16-wide k4 s2 output row), while position-major columns let it add
// whole runs of channels per output pixel and store each row once.
bool short_rows_many_channels(const Geometry& g) {
  constexpr int64_t kShortRow = 32;
  constexpr int64_t kManyChannels = 32;
  return g.out_size[2] <= kShortRow && g.out_channels_per_group >= kManyChannels;
}

// The column budget of one chunk (see Backend::forward_chunk_positions).
int64_t column_budget(const Backend& backend, const Geometry& g, OpKind op, int64_t element,
                      const Config& config) {
  int64_t budget = backend.column_chunk_bytes;
  if (op == OpKind::kForward && backend.forward_chunk_positions > 0) {
    const int64_t per_position = g.groups * g.out_channels_per_group * g.taps() * element;
    budget = std::clamp(backend.forward_chunk_positions * per_position, budget, 4 * budget);
  }
  return std::min(config.column_budget_bytes, budget);
}

// Bytes of one lane's weight-gradient sums (one weight, in the op-math
// dtype): lanes beyond the first each add one. Where that is more than a
// column budget, the chunks run one at a time over a single sum (DCGAN
// 512->256's 8 MiB weight: the backward 29 ms against 31 in lanes, and
// 10 MiB less at its peak).
int64_t weight_sum_bytes(const Geometry& g, OpKind op, at::ScalarType dtype) {
  if (op != OpKind::kWeightGrad && op != OpKind::kBackward) return 0;
  return int64_t(g.groups) * g.in_channels_per_group * g.out_channels_per_group * g.taps() *
         c10::elementSize(at::toOpMathType(dtype));
}

// Whether a weight gradient's chunks may run in lanes, each lane beyond the
// first adding a sum of its own. Not where the sums are wider than the
// columns (float32 sums of bfloat16/float16 columns): there the lanes' sums
// and each lane's GEMM result outweighed the columns themselves, and the
// bfloat16 DCGAN 256->128's backward peaked at 17.0 MiB in lanes against
// 13.75 in one (PyTorch: 15.1), for 2-4% of its time.
bool weight_sums_allow_lanes(const Geometry& g, OpKind op, at::ScalarType column_dtype,
                             int64_t threads, int64_t budget) {
  const int64_t sum_bytes = weight_sum_bytes(g, op, column_dtype);
  if (sum_bytes == 0) return true;
  if (at::toOpMathType(column_dtype) != column_dtype) return false;
  return (threads - 1) * sum_bytes <= budget;
}

ChunkPlan plan_chunks(const Backend& backend, const Geometry& g, OpKind op,
                      at::ScalarType dtype, const Config& config) {
  const int64_t element = c10::elementSize(dtype);
  const int64_t budget = column_budget(backend, g, op, element, config);
  const int64_t per_sample = std::max<int64_t>(chunk_of(g, 1).col_numel() * element, 1);
  const int64_t outer_rows = g.in_size[0] * g.in_size[1];
  const int64_t per_row = std::max<int64_t>(per_sample / outer_rows, 1);
  const int64_t threads = at::get_num_threads();
  ChunkPlan plan{};
  const int64_t inner = g.in_size[2];
  plan.windows = backend.col2im_window != nullptr && per_sample > budget &&
                 (outer_rows > 1 || inner > 1);
  plan.lanes = 1;
  if (plan.windows && (per_row <= budget || inner == 1)) {
    plan.samples_per_chunk = 1;
    plan.rows_per_window = std::max<int64_t>(budget / per_row, 1);
    plan.buffer_elements = std::min(plan.rows_per_window, outer_rows) * per_row / element;
  } else if (plan.windows) {
    // One row alone is over the budget (a long 1-D signal): parts of rows.
    const int64_t per_position = std::max<int64_t>(per_row / inner, 1);
    plan.samples_per_chunk = 1;
    plan.rows_per_window = 1;
    plan.positions_per_window = std::clamp<int64_t>(budget / per_position, 1, inner);
    plan.buffer_elements = plan.positions_per_window * per_position / element;
  } else if (backend.parallel_chunks && threads > 1 && per_sample * threads <= budget &&
             g.batch >= threads && weight_sums_allow_lanes(g, op, dtype, threads, budget)) {
    plan.lanes = threads;
    plan.samples_per_chunk = std::clamp<int64_t>(budget / threads / per_sample, 1,
                                                 (g.batch + threads - 1) / threads);
    plan.buffer_elements = plan.samples_per_chunk * per_sample / element;
  } else {
    plan.samples_per_chunk =
        std::clamp<int64_t>(budget / per_sample, 1, std::max<int64_t>(g.batch, 1));
    plan.buffer_elements = plan.samples_per_chunk * per_sample / element;
  }
  return plan;
}

// Which of the GEMM path's products run through the backend's own GEMM or
// oneDNN's matmul (Config::cpu_gemm): sets plan.gemm, and plan.gemm_suits
// for "auto". oneDNN's runs float32 only; float64 keeps ATen's there.
void choose_gemm(const Backend& backend, const Config& config, OpKind op, Plan& plan) {
  if (backend.blocked_gemm == nullptr) return;
  if (plan.column_dtype != at::kFloat && plan.column_dtype != at::kDouble) return;
  const bool onednn = plan.column_dtype == at::kFloat && onednn_gemm_available();
  switch (config.cpu_gemm) {
    case CpuGemm::kBlocked:
      plan.gemm = backend.blocked_gemm;
      return;
    case CpuGemm::kOneDnn:
      if (onednn) plan.gemm = onednn_product;
      return;
    case CpuGemm::kAten:
      return;
    case CpuGemm::kAuto: {
      // The processor decides between the two (their rules never both hold);
      // the sizes of each product decide whether it runs there.
      constexpr int64_t kLarge = int64_t(1) << 20;
      const auto onednn_suits = backend.prefers_onednn_gradient_gemm;
      if (op != OpKind::kForward && onednn && onednn_suits != nullptr &&
          onednn_suits(kLarge, kLarge, kLarge)) {
        plan.gemm = onednn_product;
        plan.gemm_suits = onednn_suits;
        return;
      }
      const auto suits = op == OpKind::kForward ? backend.prefers_blocked_gemm
                                                : backend.prefers_blocked_gradient_gemm;
      if (suits == nullptr) return;
      plan.gemm = backend.blocked_gemm;
      plan.gemm_suits = suits;
      return;
    }
  }
}

}  // namespace

Plan make_plan(const Backend& backend, const Problem& problem, const Config& config,
               at::ScalarType dtype) {
  const Path path = choose_path(backend, problem, dtype, config);
  Plan plan{config, path, path == Path::kDirect, dtype, {}, at::MemoryFormat::Contiguous, false};
  if (path == Path::kGemm) {
    plan.column_dtype = backend.column_dtype(dtype, config);
    plan.chunks = plan_chunks(backend, problem.geometry, problem.op, plan.column_dtype, config);
    if (backend.col2im_channels_last != nullptr) plan.activation_format = problem.result_format;
    plan.position_major_columns =
        plan.activation_format != at::MemoryFormat::Contiguous ||
        (problem.op == OpKind::kForward && backend.col2im_position_major_rows != nullptr &&
         !plan.chunks.windows && short_rows_many_channels(problem.geometry));
    choose_gemm(backend, config, problem.op, plan);
  }
  return plan;
}

}  // namespace torch_tconv
