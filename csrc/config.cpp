#include "config.h"

#include <atomic>
#include <mutex>

namespace torch_tconv {

bool blocked_tiles_allowed(const Config& config) {
  return config.tile_variant == TileVariant::kAuto || config.tile_variant == TileVariant::kBlocked;
}
namespace {

std::mutex g_mutex;
Config g_config;
// Independent facts, each set once: no lock needed.
std::atomic<bool> g_bfloat16_gemm_fast{false};
std::atomic<bool> g_float16_gemm_fast{false};
thread_local int64_t t_last_workspace_bytes = 0;
thread_local bool t_last_columns_position_major = false;
// Products run through the blocked tiles, by any thread: a lane's GEMMs
// run on at::parallel_for's workers, so a thread-local flag would miss them.
std::atomic<int64_t> g_blocked_products{0};
thread_local int64_t t_blocked_products_at_call = 0;
// The same for products run through oneDNN's matmul.
std::atomic<int64_t> g_onednn_products{0};
thread_local int64_t t_onednn_products_at_call = 0;

}  // namespace

Config config_snapshot() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_config;
}

void set_config(const Config& config) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_config = config;
}

MachineFacts machine_facts() {
  return {g_bfloat16_gemm_fast.load(), g_float16_gemm_fast.load()};
}

void set_machine_facts(const MachineFacts& facts) {
  g_bfloat16_gemm_fast.store(facts.bfloat16_gemm_fast);
  g_float16_gemm_fast.store(facts.float16_gemm_fast);
}

int64_t last_column_workspace_bytes() {
  return t_last_workspace_bytes;
}

bool last_columns_position_major() {
  return t_last_columns_position_major;
}

bool last_gemm_blocked() {
  return g_blocked_products.load() > t_blocked_products_at_call;
}

void record_blocked_product() {
  g_blocked_products.fetch_add(1, std::memory_order_relaxed);
}

bool last_gemm_onednn() {
  return g_onednn_products.load() > t_onednn_products_at_call;
}

void record_onednn_product() {
  g_onednn_products.fetch_add(1, std::memory_order_relaxed);
}

void record_column_workspace(int64_t bytes, bool position_major) {
  t_last_workspace_bytes = bytes;
  t_last_columns_position_major = position_major;
  t_blocked_products_at_call = g_blocked_products.load();
  t_onednn_products_at_call = g_onednn_products.load();
}

}  // namespace torch_tconv
