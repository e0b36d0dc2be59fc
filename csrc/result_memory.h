// Fresh result tensors of the ops. On the CPU, a large result is served by
// a fresh mapping on every call: glibc's malloc maps allocations of 32 MiB
// and more (its largest dynamic mmap threshold) and unmaps them on free, so
// each 4 KiB page of such a result faults on its first write. On a Zen 3
// VM, allocating 33 MiB and writing it once took 11-15 ms (8,400 faults),
// and writing it again 1.5 ms: for a depthwise layer or a float64 decoder
// the faults cost more than the arithmetic. Asking the kernel for
// transparent huge pages before the first write makes that 16 faults of
// 2 MiB, 3 ms for the same 33 MiB (Config::cpu_huge_pages).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "config.h"

namespace torch_tconv {

// Results from this size up are advised; smaller ones come from malloc's
// heap, whose pages are reused from call to call without faults.
constexpr int64_t kHugePageAdviceMinBytes = int64_t(32) << 20;
constexpr int64_t kHugePageBytes = int64_t(2) << 20;

// The whole 2 MiB pages inside [begin, begin + bytes): the range that may be
// advised without touching memory that is not the tensor's. {0, 0} where
// there is none.
struct PageRange {
  uintptr_t begin = 0;
  uintptr_t end = 0;
};
PageRange whole_huge_pages(uintptr_t begin, int64_t bytes);

// at::empty(shape, options), with the CPU result's whole huge pages advised
// where config.cpu_huge_pages holds and the result has at least
// kHugePageAdviceMinBytes. The advice is a hint: where the kernel has
// transparent huge pages off, or none is free, the result keeps 4 KiB pages
// and nothing else changes.
at::Tensor empty_result(at::IntArrayRef shape, const at::TensorOptions& options,
                        const Config& config);

}  // namespace torch_tconv
