#include "config.h"

#include <mutex>

namespace torch_tconv {
namespace {

std::mutex g_mutex;
Config g_config;
MachineFacts g_facts;
thread_local int64_t t_last_workspace_bytes = 0;

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
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_facts;
}

void set_machine_facts(const MachineFacts& facts) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_facts = facts;
}

int64_t last_column_workspace_bytes() {
  return t_last_workspace_bytes;
}

void record_column_workspace_bytes(int64_t bytes) {
  t_last_workspace_bytes = bytes;
}

}  // namespace torch_tconv
