// 2-D convolution of channels-last images by oneDNN: forward, gradient of the input, gradient of
// the kernel. Layouts are jaxnets' (and flax.linen.Conv's): x (N, H, W, C), kernel
// (KH, KW, C, O), y (N, OH, OW, O); float32. Strides, dilations and explicit (low, high) pads
// per spatial axis come as attributes. Lecture: seed 004, Lecture 9 §3 (eq. 9-10).
#include "dnnl_common.h"

namespace jaxnets {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

// thread_scratch slots live within one call
enum Slot { kKernel, kScratchpad, kSrc, kDst };

// The convolutions run on the thread XLA calls them from, not on the OneDnnThread the LSTM
// uses: handing each to another thread cost more than it saved (measured twice: LeNet-5 batch
// 256 11 -> 16 ms and 8.7 -> 10-11 ms per training step; ResNet-18 batch 32 92 -> 97 ms), as
// that thread's OpenMP workers spin while XLA's threads need the cores. The price: XLA calls a
// step's convolutions from two of its pool threads, libgomp keeps a team for each, counts more
// threads than cores and so sleeps between calls; each call then wakes a worker (~0.05 ms).

struct ConvGeometry {
  memory::dims src, weights, dst, strides, dilates, pad_low, pad_high;

  std::string key() const {
    return dims_key({src, weights, dst, strides, dilates, pad_low, pad_high});
  }
  // Images of 2 to 4 output pixels (ResNet-18's 2x2 stage on 32x32 inputs) run in the layouts
  // oneDNN chooses, reordered from and to the caller's: its brgemm kernels on channels-last
  // data took 3x as long there (256 channels, batch 32: 1.41 vs 0.48 ms forward, 1.21 vs
  // 0.40 ms input gradient), while on larger images the reorders cost more than they save
  // (ResNet-18 B32 step: blocked up to 2x2 ~58.6 -> ~55 ms; up to 4x4, 62 -> 68 ms). A 1x1
  // image from a 1x1 one is a matmul, as fast either way.
  bool blocked() const { return dst[2] * dst[3] <= 4 && src[2] * src[3] > 1; }

  memory::desc src_user() const { return memory::desc(src, dt::f32, tag::nhwc); }
  memory::desc dst_user() const { return memory::desc(dst, dt::f32, tag::nhwc); }
  memory::desc src_md() const { return blocked() ? any(src) : src_user(); }
  memory::desc dst_md() const { return blocked() ? any(dst) : dst_user(); }
  memory::desc weights_md(tag t) const { return memory::desc(weights, dt::f32, t); }
  static memory::desc any(const memory::dims& dims) { return memory::desc(dims, dt::f32, tag::any); }

  // On channels-last data the forward pass reads the caller's HWIO kernel as it is: oneDNN's
  // brgemm convolutions take it at the speed of a blocked layout, and a reorder per call cost
  // more (measured on ResNet-18). The gradients' primitives choose their own kernel layouts.
  dnnl::convolution_forward::primitive_desc forward_pd() const {
    return dnnl::convolution_forward::primitive_desc(
        cpu_engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
        src_md(), weights_md(blocked() ? tag::any : tag::hwio), dst_md(), strides, dilates,
        pad_low, pad_high, user_scratchpad());
  }
};

// Geometry from the buffers' shapes (NHWC, HWIO, NHWC) and the attributes.
ConvGeometry geometry(ffi::Span<const int64_t> x, ffi::Span<const int64_t> k,
                      ffi::Span<const int64_t> y, ffi::Span<const int64_t> strides,
                      ffi::Span<const int64_t> dilation, ffi::Span<const int64_t> padding) {
  ConvGeometry g;
  g.src = {x[0], x[3], x[1], x[2]};
  g.weights = {k[3], k[2], k[0], k[1]};
  g.dst = {y[0], y[3], y[1], y[2]};
  g.strides = {strides[0], strides[1]};
  g.dilates = {dilation[0] - 1, dilation[1] - 1};  // oneDNN counts the gaps
  g.pad_low = {padding[0], padding[2]};
  g.pad_high = {padding[1], padding[3]};
  return g;
}

// A primitive with the reorders between the caller's kernel layout (HWIO) and the one oneDNN
// chose for it.
struct Forward {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward primitive;
  memory::desc user_weights;
};

struct BackwardData {
  dnnl::convolution_backward_data::primitive_desc pd;
  dnnl::convolution_backward_data primitive;
  memory::desc user_weights;
};

struct BackwardWeights {
  dnnl::convolution_backward_weights::primitive_desc pd;
  dnnl::convolution_backward_weights primitive;
  memory::desc user_weights;
};

PrimitiveCache<Forward> forward_cache;
PrimitiveCache<BackwardData> backward_data_cache;
PrimitiveCache<BackwardWeights> backward_weights_cache;


ffi::Error ConvForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                           ffi::ResultBuffer<ffi::F32> y, ffi::Span<const int64_t> strides,
                           ffi::Span<const int64_t> dilation, ffi::Span<const int64_t> padding) {
  return guarded("jaxnets conv forward", [&] {
    auto g = geometry(x.dimensions(), kernel.dimensions(), y->dimensions(), strides, dilation,
                      padding);
    auto entry = forward_cache.get(g.key(), [&] {
      auto pd = g.forward_pd();
      return Forward{pd, dnnl::convolution_forward(pd), g.weights_md(tag::hwio)};
    });
    auto& s = cpu_stream();
    memory src = in_layout(entry->pd.src_desc(), g.src_user(), x.typed_data(), kSrc);
    memory w =
        in_layout(entry->pd.weights_desc(), entry->user_weights, kernel.typed_data(), kKernel);
    memory dst = out_layout(entry->pd.dst_desc(), g.dst_user(), y->typed_data(), kDst);
    entry->primitive.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst},
                               {DNNL_ARG_SCRATCHPAD, scratchpad(entry->pd, kScratchpad)}});
    copy_out(dst, g.dst_user(), y->typed_data());
    s.wait();
  });
}

ffi::Error ConvBackwardDataImpl(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> kernel,
                                ffi::ResultBuffer<ffi::F32> dx,
                                ffi::Span<const int64_t> strides,
                                ffi::Span<const int64_t> dilation,
                                ffi::Span<const int64_t> padding) {
  return guarded("jaxnets conv input gradient", [&] {
    auto g = geometry(dx->dimensions(), kernel.dimensions(), dy.dimensions(), strides, dilation,
                      padding);
    auto entry = backward_data_cache.get(g.key(), [&] {
      auto pd = dnnl::convolution_backward_data::primitive_desc(
          cpu_engine(), dnnl::algorithm::convolution_direct, g.src_md(), g.weights_md(tag::any),
          g.dst_md(), g.strides, g.dilates, g.pad_low, g.pad_high, g.forward_pd(),
          user_scratchpad());
      return BackwardData{pd, dnnl::convolution_backward_data(pd), g.weights_md(tag::hwio)};
    });
    auto& s = cpu_stream();
    memory diff_dst = in_layout(entry->pd.diff_dst_desc(), g.dst_user(), dy.typed_data(), kDst);
    memory w =
        in_layout(entry->pd.weights_desc(), entry->user_weights, kernel.typed_data(), kKernel);
    memory diff_src = out_layout(entry->pd.diff_src_desc(), g.src_user(), dx->typed_data(), kSrc);
    entry->primitive.execute(
        s, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, diff_src},
            {DNNL_ARG_SCRATCHPAD, scratchpad(entry->pd, kScratchpad)}});
    copy_out(diff_src, g.src_user(), dx->typed_data());
    s.wait();
  });
}

ffi::Error ConvBackwardWeightsImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                                   ffi::ResultBuffer<ffi::F32> dkernel,
                                   ffi::Span<const int64_t> strides,
                                   ffi::Span<const int64_t> dilation,
                                   ffi::Span<const int64_t> padding) {
  return guarded("jaxnets conv kernel gradient", [&] {
    auto g = geometry(x.dimensions(), dkernel->dimensions(), dy.dimensions(), strides, dilation,
                      padding);
    auto entry = backward_weights_cache.get(g.key(), [&] {
      auto pd = dnnl::convolution_backward_weights::primitive_desc(
          cpu_engine(), dnnl::algorithm::convolution_direct, g.src_md(), g.weights_md(tag::any),
          g.dst_md(), g.strides, g.dilates, g.pad_low, g.pad_high, g.forward_pd(),
          user_scratchpad());
      return BackwardWeights{pd, dnnl::convolution_backward_weights(pd), g.weights_md(tag::hwio)};
    });
    auto& s = cpu_stream();
    memory src = in_layout(entry->pd.src_desc(), g.src_user(), x.typed_data(), kSrc);
    memory diff_dst = in_layout(entry->pd.diff_dst_desc(), g.dst_user(), dy.typed_data(), kDst);
    memory diff_w = out_layout(entry->pd.diff_weights_desc(), entry->user_weights,
                               dkernel->typed_data(), kKernel);
    entry->primitive.execute(
        s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_WEIGHTS, diff_w},
            {DNNL_ARG_SCRATCHPAD, scratchpad(entry->pd, kScratchpad)}});
    copy_out(diff_w, entry->user_weights, dkernel->typed_data());
    s.wait();
  });
}

}  // namespace
}  // namespace jaxnets

#define JAXNETS_CONV_ATTRS                           \
  .Attr<xla::ffi::Span<const int64_t>>("strides")    \
      .Attr<xla::ffi::Span<const int64_t>>("dilation") \
      .Attr<xla::ffi::Span<const int64_t>>("padding")

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnetsConvForward, jaxnets::ConvForwardImpl,
                              xla::ffi::Ffi::Bind()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Ret<xla::ffi::Buffer<xla::ffi::F32>>() JAXNETS_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnetsConvBackwardData, jaxnets::ConvBackwardDataImpl,
                              xla::ffi::Ffi::Bind()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Ret<xla::ffi::Buffer<xla::ffi::F32>>() JAXNETS_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnetsConvBackwardWeights, jaxnets::ConvBackwardWeightsImpl,
                              xla::ffi::Ffi::Bind()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Arg<xla::ffi::Buffer<xla::ffi::F32>>()
                                  .Ret<xla::ffi::Buffer<xla::ffi::F32>>() JAXNETS_CONV_ATTRS);
