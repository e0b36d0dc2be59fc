#include "autotune.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <mutex>

namespace torch_tconv {
namespace {

std::mutex g_mutex;
std::map<std::vector<int64_t>, AutotuneChoice> g_choices;

std::vector<int64_t> key_of(OpKind op, const Problem& problem, at::ScalarType dtype,
                            const at::Device& device, const Config& config) {
  const Geometry& g = problem.geometry;
  std::vector<int64_t> key{static_cast<int64_t>(op),
                           static_cast<int64_t>(device.type()),
                           device.index(),
                           static_cast<int64_t>(dtype),
                           g.batch,
                           g.groups,
                           g.in_channels_per_group,
                           g.out_channels_per_group,
                           config.column_budget_bytes,
                           config.int32_indices,
                           config.cpu_row_kernels,
                           static_cast<int64_t>(config.cpu_reduced_precision_gemm),
                           static_cast<int64_t>(config.tile_variant),
                           static_cast<int64_t>(config.cpu_isa),
                           static_cast<int64_t>(config.cpu_gemm)};
  for (int j = 0; j < kMaxSpatialDims; ++j) {
    for (int64_t v : {g.in_size[j], g.out_size[j], g.kernel[j], g.stride[j], g.padding[j],
                      g.dilation[j]}) {
      key.push_back(v);
    }
  }
  return key;
}

// GEMM + col2im, the direct kernels, and the implicit GEMMs: on CUDA with
// float16/bfloat16 in each tensor-core shape (unless one is forced), else
// with the scalar tiles (the CPU's emulated tensor-core tiles are a test
// device, never fast).
std::vector<AutotuneChoice> candidates(const Backend& backend, at::ScalarType dtype,
                               const at::Device& device, const Config& config) {
  std::vector<AutotuneChoice> result{{Algorithm::kGemm, config.tile_variant},
                             {Algorithm::kDirect, config.tile_variant}};
  if (backend.phase_forward == nullptr) return result;
  const bool tensor_cores = device.is_cuda() && at::isReducedFloatingType(dtype);
  if (!tensor_cores) {
    result.push_back({Algorithm::kPhase, TileVariant::kScalar});
    if (device.is_cpu() && (dtype == at::kFloat || dtype == at::kDouble) &&
        blocked_tiles_allowed(config)) {
      result.push_back({Algorithm::kPhase, TileVariant::kBlocked});
    }
  } else if (config.tile_variant != TileVariant::kAuto) {
    result.push_back({Algorithm::kPhase, config.tile_variant});
  } else {
    for (TileVariant v : {TileVariant::kMma128x64, TileVariant::kMma64x64, TileVariant::kMma64x32,
                          TileVariant::kMma32x16}) {
      result.push_back({Algorithm::kPhase, v});
    }
  }
  return result;
}

Config with_choice(Config config, const AutotuneChoice& choice) {
  config.algorithm = choice.algorithm;
  config.tile_variant = choice.tile_variant;
  return config;
}

// Seconds of one call of run(config), the device's queue drained before and
// after.
double seconds_of(const Backend& backend, const std::function<void(const Config&)>& run,
                  const Config& config) {
  if (backend.synchronize != nullptr) backend.synchronize();
  const auto start = std::chrono::steady_clock::now();
  run(config);
  if (backend.synchronize != nullptr) backend.synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A candidate's first call (warm-up) more than this many times the best
// time so far is not timed further: it cannot win, and a slow path (the
// direct kernels of a dense layer) would make the first call long.
constexpr double kHopeless = 10.0;
constexpr int kTimedCalls = 2;

AutotuneChoice fastest(const Backend& backend, const std::vector<AutotuneChoice>& choices, const Config& config,
               const std::function<void(const Config&)>& run) {
  AutotuneChoice best = choices.front();
  double best_seconds = std::numeric_limits<double>::infinity();
  for (const AutotuneChoice& choice : choices) {
    const Config candidate = with_choice(config, choice);
    const double warm_up = seconds_of(backend, run, candidate);
    if (warm_up > kHopeless * best_seconds) continue;
    double seconds = warm_up;
    for (int i = 0; i < kTimedCalls; ++i) {
      seconds = std::min(seconds, seconds_of(backend, run, candidate));
    }
    if (seconds < best_seconds) {
      best_seconds = seconds;
      best = choice;
    }
  }
  return best;
}

}  // namespace

Config tuned_config(const Backend& backend, OpKind op, const Problem& problem,
                    at::ScalarType dtype, const at::Device& device, const Config& config,
                    const std::function<void(const Config&)>& run) {
  if (!config.benchmark || config.algorithm != Algorithm::kAuto) return config;
  const std::vector<int64_t> key = key_of(op, problem, dtype, device, config);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    const auto found = g_choices.find(key);
    if (found != g_choices.end()) return with_choice(config, found->second);
  }
  // Timing would synchronize the device, which a stream capture forbids.
  if (backend.capturing != nullptr && backend.capturing()) return config;
  const AutotuneChoice choice = fastest(backend, candidates(backend, dtype, device, config), config, run);
  std::lock_guard<std::mutex> lock(g_mutex);
  g_choices.emplace(key, choice);
  return with_choice(config, choice);
}

std::vector<std::pair<std::vector<int64_t>, AutotuneChoice>> autotune_choices() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return {g_choices.begin(), g_choices.end()};
}

void clear_autotune_choices() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_choices.clear();
}

}  // namespace torch_tconv
