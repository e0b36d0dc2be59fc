#include "gemm.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

namespace torch_tconv {

namespace {

// oneDNN's float32 matmul, as torch registers it for its compiler's fused
// linear layers: Y (M, N) = X (M, K) · Wᵀ for W (N, K). Found once; absent
// where torch was built without oneDNN.
const c10::OperatorHandle* onednn_linear() {
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findOp({"mkldnn::_linear_pointwise", ""});
  return op.has_value() ? &*op : nullptr;
}

at::Tensor onednn_linear_product(const at::Tensor& x, const at::Tensor& w) {
  torch::jit::Stack stack;
  torch::jit::push(stack, x, w, std::optional<at::Tensor>(), std::string("none"),
                   c10::List<std::optional<at::Scalar>>(), std::optional<std::string>());
  onednn_linear()->callBoxed(&stack);
  return stack[0].toTensor();
}

// Most elements of one oneDNN product's temporary (512 KiB of float32), unless
// a block of 16 rows or columns alone is more.
constexpr int64_t kOneDnnBlockElements = int64_t(1) << 17;

// Whether each matrix of a batch (G, R, C) is dense: rows C apart, or stored
// transposed with columns R apart.
bool dense_rows(const at::Tensor& t) {
  return t.stride(2) == 1 && (t.size(1) <= 1 || t.stride(1) == t.size(2));
}

bool dense_columns(const at::Tensor& t) {
  return t.stride(1) == 1 && (t.size(2) <= 1 || t.stride(2) == t.size(1));
}

// Whether oneDNN's matmul takes a · b at its speed: it runs a reference
// kernel on matrices with gaps between rows (a window's part of an input
// row, a group's channels of a channels-last row; a channels-last U-Net
// layer's backward took a minute through it), and reads X best with
// contiguous rows (2048 x 2048 x 512: 209 GFLOP/s with W transposed, 144-152
// with X transposed; a transposed A, the channels-last weight gradient's
// input rows, would also need a copy at the peak). ATen's bmm reads the
// others as they are.
bool onednn_takes(const at::Tensor& a, const at::Tensor& b) {
  return dense_rows(a) && (dense_rows(b) || dense_columns(b));
}

}  // namespace

bool onednn_gemm_available() {
  return onednn_linear() != nullptr;
}

void onednn_product(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out,
                    bool accumulate) {
  // The operands may be views of tensors that require grad: the op has no
  // autograd kernel, and nothing here is differentiated.
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  TORCH_INTERNAL_ASSERT(onednn_takes(a, b), "onednn_product: operands runs_blocked refuses");
  if (a.size(1) == 0 || b.size(2) == 0) return;
  if (a.size(2) == 0) {
    // An empty sum, which oneDNN need not take: C is itself, or zero.
    if (!accumulate) out.zero_();
    return;
  }
  // The op returns a new tensor: C is made in blocks, so that the temporary
  // stays small (a weight gradient's whole product is the weight: 8 MiB for
  // the VAE 512->256 layer, which put its peak over PyTorch's). Blocks of W's
  // rows where they are contiguous (B stored transposed), else of X's rows: a
  // block must stay a dense matrix, since oneDNN runs a reference kernel on
  // others (a channels-last U-Net layer's backward took a minute).
  const bool by_columns = dense_columns(b);
  const int64_t dim = by_columns ? 1 : 0;
  const int64_t length = out.size(1 + dim);
  const int64_t across = out.size(2 - dim);
  const int64_t block = std::max<int64_t>(kOneDnnBlockElements / across, 16);
  for (int64_t g = 0; g < a.size(0); ++g) {
    const at::Tensor a_g = a.select(0, g);
    const at::Tensor b_g = b.select(0, g);
    const at::Tensor out_g = out.select(0, g);
    for (int64_t begin = 0; begin < length; begin += block) {
      const int64_t size = std::min(block, length - begin);
      // X = A, W = Bᵀ, one of them narrowed to the block.
      const at::Tensor product =
          by_columns ? onednn_linear_product(a_g, b_g.narrow(1, begin, size).t())
                     : onednn_linear_product(a_g.narrow(0, begin, size), b_g.t());
      const at::Tensor target = out_g.narrow(dim, begin, size);
      if (accumulate) {
        target.add_(product);
      } else {
        target.copy_(product);
      }
    }
  }
}

bool runs_blocked(const Plan& plan, const at::Tensor& a, const at::Tensor& b) {
  if (plan.gemm == nullptr) return false;
  if (plan.gemm == onednn_product && !onednn_takes(a, b)) return false;
  return plan.gemm_suits == nullptr || plan.gemm_suits(a.size(1), b.size(2), a.size(2));
}

void blocked_product(const Plan& plan, const at::Tensor& a, const at::Tensor& b,
                     const at::Tensor& out, bool accumulate) {
  if (plan.gemm == onednn_product) {
    record_onednn_product();
  } else {
    record_blocked_product();
  }
  plan.gemm(a, b, out, accumulate);
}

void bmm_into(const Plan& plan, at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  if (runs_blocked(plan, a, b)) {
    blocked_product(plan, a, b, out, /*accumulate=*/false);
  } else {
    at::bmm_out(out, a, b);
  }
}

at::Tensor bmm(const Plan& plan, const at::Tensor& a, const at::Tensor& b) {
  if (!runs_blocked(plan, a, b)) return at::bmm(a, b);
  at::Tensor out = at::empty({a.size(0), a.size(1), b.size(2)}, a.options());
  blocked_product(plan, a, b, out, /*accumulate=*/false);
  return out;
}

at::Tensor input_part(const at::Tensor& t, const Chunk& c) {
  const int64_t n = c.g.batch;
  return t.narrow(0, c.n0, n)
      .view({n, t.size(1), -1})
      .narrow(2, c.position_begin, c.g.in_numel());
}

at::Tensor group_major(const at::Tensor& t, const Chunk& c, at::ScalarType dtype) {
  const Geometry& g = c.g;
  const int64_t n = g.batch;
  if (is_one_sample(c) && t.scalar_type() == dtype) {
    return input_part(t, c).view({g.groups, g.in_channels_per_group, g.in_numel()});
  }
  auto out = at::empty({g.groups, g.in_channels_per_group, n, g.in_numel()},
                       t.options().dtype(dtype));
  out.copy_(input_part(t, c)
                .view({n, g.groups, g.in_channels_per_group, g.in_numel()})
                .permute({1, 2, 0, 3}));
  return out.view({g.groups, g.in_channels_per_group, n * g.in_numel()});
}

at::Tensor position_rows(const at::Tensor& t, const Chunk& c) {
  const int64_t channels = t.size(1);
  const int64_t positions = t.numel() / (t.size(0) * channels);
  return t.movedim(1, -1)
      .view({-1, channels})
      .narrow(0, c.n0 * positions + c.position_begin, c.g.col_width())
      .view({c.g.col_width(), c.g.groups, channels / c.g.groups})
      .transpose(0, 1);
}

at::Tensor position_rows_of_contiguous(const at::Tensor& t, const Chunk& c,
                                      at::ScalarType dtype) {
  const Geometry& g = c.g;
  const int64_t n = g.batch;
  if (is_one_sample(c) && t.scalar_type() == dtype) {
    // One sample's (C_in/G, positions) planes are already its rows,
    // transposed: the GEMM reads them as they are.
    return group_major(t, c, dtype).transpose(1, 2);
  }
  auto rows = at::empty({g.groups, n, g.in_numel(), g.in_channels_per_group},
                        t.options().dtype(dtype));
  rows.copy_(input_part(t, c)
                 .view({n, g.groups, g.in_channels_per_group, g.in_numel()})
                 .permute({1, 0, 3, 2}));
  return rows.view({g.groups, n * g.in_numel(), g.in_channels_per_group});
}

namespace {

// The weight (C_in, C_out/G, taps) as (groups, C_in/groups, taps * C_out/G),
// contiguous, in `dtype`.
at::Tensor tap_major_weight(const at::Tensor& w, const Geometry& g, at::ScalarType dtype) {
  return w.view({g.groups, g.in_channels_per_group, g.out_channels_per_group, g.taps()})
      .transpose(2, 3)
      .contiguous()
      .view({g.groups, g.in_channels_per_group, g.taps() * g.out_channels_per_group})
      .to(dtype);
}

}  // namespace

at::Tensor input_grad_weight(const at::Tensor& w, const Geometry& g, const Plan& plan) {
  if (plan.position_major()) {
    // (C_in, C_out/G, taps) as (G, taps * C_out/G, C_in/G), in one copy.
    return w.view({g.groups, g.in_channels_per_group, g.out_channels_per_group, g.taps()})
        .permute({0, 3, 2, 1})
        .contiguous()
        .view({g.groups, g.taps() * g.out_channels_per_group, g.in_channels_per_group})
        .to(plan.column_dtype);
  }
  return w.view({g.groups, g.in_channels_per_group, g.out_channels_per_group * g.taps()})
      .to(plan.column_dtype);
}

void input_grad_of_chunk(const at::Tensor& w_op, const Chunk& c, const Plan& plan,
                         const at::Tensor& cols, const at::Tensor& grad_input) {
  const Geometry& g = c.g;
  const int64_t n = g.batch;
  const int64_t positions = g.in_numel();
  const bool same_dtype = cols.scalar_type() == grad_input.scalar_type();
  if (plan.position_major()) {
    at::Tensor dx = position_rows(grad_input, c);
    // One group: the chunk's rows of grad_input are the GEMM's output as
    // they are, written in place.
    if (dx.is_contiguous() && same_dtype) {
      bmm_into(plan, dx, cols, w_op);
    } else {
      dx.copy_(bmm(plan, cols, w_op));
    }
    return;
  }
  if (is_one_sample(c) && same_dtype) {
    // The GEMM writes the sample's part in place, with no copy (a kernel launch less
    // on the GPU).
    at::Tensor dx = input_part(grad_input, c).view({g.groups, g.in_channels_per_group, positions});
    bmm_into(plan, dx, w_op, cols);
    return;
  }
  const at::Tensor dx = bmm(plan, w_op, cols);
  // (G, C_in/G, n * positions), back to (n, C_in, positions) order.
  input_part(grad_input, c)
      .view({n, g.groups, g.in_channels_per_group, positions})
      .copy_(dx.view({g.groups, g.in_channels_per_group, n, positions}).permute({2, 0, 1, 3}));
}

at::Tensor forward_weight(const Backend& backend, const at::Tensor& w, const Geometry& g,
                          const Plan& plan) {
  if (plan.position_major()) return tap_major_weight(w, g, plan.column_dtype);
  at::Tensor w_t =
      w.view({g.groups, g.in_channels_per_group, g.out_channels_per_group * g.taps()})
          .to(plan.column_dtype)
          .transpose(1, 2);
  return backend.contiguous_forward_weight ? w_t.contiguous() : w_t;
}

void forward_columns(const at::Tensor& w_op, const at::Tensor& x, const Chunk& c,
                     const Plan& plan, at::Tensor cols) {
  if (plan.position_major()) {
    const bool channels_last = plan.activation_format != at::MemoryFormat::Contiguous;
    bmm_into(plan, cols,
             channels_last ? position_rows(x, c).to(cols.scalar_type())
                           : position_rows_of_contiguous(x, c, cols.scalar_type()),
             w_op);
    return;
  }
  bmm_into(plan, cols, w_op, group_major(x, c, cols.scalar_type()));
}

}  // namespace torch_tconv
