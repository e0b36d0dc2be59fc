// Benchmark mode (torch_tconv.backends.benchmark, like
// torch.backends.cudnn.benchmark): at the first call of each shape key, time
// the candidate algorithms and tile variants and keep the fastest for the
// rest of the process. Off by default: the default choice is a rule of the
// shape (plan.cpp, kernels/mma_tiles.h), so that a call's numerics never
// depend on a measurement.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <utility>
#include <vector>

#include "backend.h"
#include "problem.h"

namespace torch_tconv {

struct AutotuneChoice {
  Algorithm algorithm;
  TileVariant tile_variant;
};

// The configuration a call runs with: `config` itself unless benchmark mode
// is on and the algorithm is "auto"; then the fastest candidate for the
// call's key (op, device, dtype, geometry and the settings that change the
// kernels), timed at the key's first call by calling run(candidate) (its
// results discarded) and cached. While the device's current stream captures
// a CUDA graph nothing is timed: the cached choice, or `config`.
Config tuned_config(const Backend& backend, OpKind op, const Problem& problem,
                    at::ScalarType dtype, const at::Device& device, const Config& config,
                    const std::function<void(const Config&)>& run);

// The cached choices by key (op, device type and index, dtype, geometry and
// settings, as integers), and a way to forget them
// (torch_tconv.backends.benchmark_choices and clear_benchmark_choices).
std::vector<std::pair<std::vector<int64_t>, AutotuneChoice>> autotune_choices();
void clear_autotune_choices();

}  // namespace torch_tconv
