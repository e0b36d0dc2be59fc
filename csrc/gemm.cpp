#include "gemm.h"

namespace torch_tconv {

at::Tensor input_part(const at::Tensor& t, const Chunk& c) {
  const int64_t n = c.g.batch;
  return t.narrow(0, c.n0, n)
      .view({n, t.size(1), -1})
      .narrow(2, c.position_begin, c.g.in_numel());
}

at::Tensor group_major(const at::Tensor& t, const Chunk& c, at::ScalarType dtype) {
  const Geometry& g = c.g;
  const int64_t n = g.batch;
  if (is_one_whole_sample(c) && t.scalar_type() == dtype) {
    return input_part(t, c).view({g.groups, g.in_channels_per_group, g.in_numel()});
  }
  auto out = at::empty({g.groups, g.in_channels_per_group, n, g.in_numel()},
                       t.options().dtype(dtype));
  out.copy_(input_part(t, c)
                .view({n, g.groups, g.in_channels_per_group, g.in_numel()})
                .permute({1, 2, 0, 3}));
  return out.view({g.groups, g.in_channels_per_group, n * g.in_numel()});
}

at::Tensor weight_by_group(const at::Tensor& w, const Geometry& g, at::ScalarType dtype) {
  return w.view({g.groups, g.in_channels_per_group, g.out_channels_per_group * g.taps()}).to(dtype);
}

void input_grad_of_chunk(const at::Tensor& w_g, const Chunk& c, const at::Tensor& cols,
                         const at::Tensor& grad_input) {
  const Geometry& g = c.g;
  const int64_t n = g.batch;
  const int64_t positions = g.in_numel();
  if (is_one_whole_sample(c) && cols.scalar_type() == grad_input.scalar_type()) {
    // The GEMM writes the sample in place, with no copy (a kernel launch less
    // on the GPU).
    at::Tensor dx = input_part(grad_input, c).view({g.groups, g.in_channels_per_group, positions});
    at::bmm_out(dx, w_g, cols);
    return;
  }
  const at::Tensor dx = at::bmm(w_g, cols);
  // (G, C_in/G, n * positions), back to (n, C_in, positions) order.
  input_part(grad_input, c)
      .view({n, g.groups, g.in_channels_per_group, positions})
      .copy_(dx.view({g.groups, g.in_channels_per_group, n, positions}).permute({2, 0, 1, 3}));
}

at::Tensor forward_weight(const Backend& backend, const at::Tensor& w, const Geometry& g,
                          at::ScalarType dtype) {
  at::Tensor w_t =
      w.view({g.groups, g.in_channels_per_group, g.out_channels_per_group * g.taps()})
          .to(dtype)
          .transpose(1, 2);
  return backend.contiguous_forward_weight ? w_t.contiguous() : w_t;
}

void forward_columns(const at::Tensor& w_t, const at::Tensor& x, const Chunk& c,
                     at::Tensor cols) {
  at::bmm_out(cols, w_t, group_major(x, c, cols.scalar_type()));
}

}  // namespace torch_tconv
