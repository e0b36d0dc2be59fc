#include "result_memory.h"

#include <ATen/ATen.h>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace torch_tconv {

PageRange whole_huge_pages(uintptr_t begin, int64_t bytes) {
  const uintptr_t mask = static_cast<uintptr_t>(kHugePageBytes) - 1;
  const uintptr_t first = (begin + mask) & ~mask;
  const uintptr_t last = (begin + static_cast<uintptr_t>(bytes)) & ~mask;
  if (bytes <= 0 || last <= first) return {};
  return {first, last};
}

at::Tensor empty_result(at::IntArrayRef shape, const at::TensorOptions& options,
                        const Config& config) {
  at::Tensor result = at::empty(shape, options);
#ifdef __linux__
  const int64_t bytes = static_cast<int64_t>(result.nbytes());
  if (config.cpu_huge_pages && result.device().is_cpu() && bytes >= kHugePageAdviceMinBytes) {
    const PageRange pages =
        whole_huge_pages(reinterpret_cast<uintptr_t>(result.data_ptr()), bytes);
    // The return value is not checked on purpose: EINVAL where the kernel
    // was built without transparent huge pages leaves the pages as they were.
    if (pages.end > pages.begin) {
      (void)madvise(reinterpret_cast<void*>(pages.begin), pages.end - pages.begin,
                    MADV_HUGEPAGE);
    }
  }
#else
  (void)config;
#endif
  return result;
}

}  // namespace torch_tconv
