// Every library header that cpu/launchers.h and the kernel bodies use,
// included by each cpu/launchers_<isa>.cpp before it switches the compiler
// to its own instructions: the inline functions of these headers then come
// out of every variant as the baseline's, identical to the copies in the
// library's other objects, so that whichever copy the linker keeps runs on
// any processor. Only what follows the switch (the bodies and launchers, in
// the variant's namespace) uses the wider instructions; scripts/isa_check.py
// checks the built library for any other function that does.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <ATen/ops/empty.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>  // the processor family (launchers.h)
#include <immintrin.h>  // streaming stores (register_rows.h)
#endif

#include "../backend.h"
#include "../config.h"
#include "../kernels/geometry.h"
