// One LSTM layer by oneDNN's LSTM primitive: inference, forward training (which fills a
// workspace of the gates and states for the backward pass) and backward (gradients of the
// input, the initial state and the three parameters). x (T, N, F) is time major (oneDNN's
// tnc, its fastest layout; jaxnets/native/lstm.py transposes jaxnets' batch-first sequences);
// the rest is jaxnets.nn.recurrent.LSTMCell's: h0 and c0 (N, H), w_ih (F, 4H), w_hh (H, 4H),
// bias (4H,), gates (i, f, g, o) = oneDNN's (i, f, c~, o), so the weights are oneDNN's ldigo
// and the bias ldgo with one layer and one direction; outputs y (T, N, H), h_T and c_T (N, H).
// float32. The attribute `reverse` (0 or 1) runs the recurrence from the last time step to the
// first (oneDNN's unidirectional_right2left); y stays in the input's time order.
// Lecture: seed 004, Lecture 14 §4 (long short-term memory), Lecture 13 §3 (backprop through
// time).
#include <cstring>
#include <tuple>

#include "dnnl_common.h"

namespace jaxnets {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;


struct LstmGeometry {
  int64_t time, batch, features, hidden;
  bool reverse;

  std::string key() const {
    return dims_key({{time, batch, features, hidden, reverse ? 1 : 0}});
  }
  dnnl::rnn_direction direction() const {
    return reverse ? dnnl::rnn_direction::unidirectional_right2left
                   : dnnl::rnn_direction::unidirectional_left2right;
  }
  memory::desc layer_md(int64_t channels) const {  // x, y and their gradients: (T, N, C)
    return memory::desc({time, batch, channels}, dt::f32, tag::tnc);
  }
  memory::desc state_md() const {  // h and c: (N, H)
    return memory::desc({1, 1, batch, hidden}, dt::f32, tag::ldnc);
  }
  memory::desc weights_md(int64_t inputs, tag t) const {  // (inputs, 4H)
    return memory::desc({1, 1, inputs, 4, hidden}, dt::f32, t);
  }
  memory::desc bias_md() const { return memory::desc({1, 1, 4, hidden}, dt::f32, tag::ldgo); }

  dnnl::lstm_forward::primitive_desc forward_pd(dnnl::prop_kind kind) const {
    return dnnl::lstm_forward::primitive_desc(
        cpu_engine(), kind, direction(), layer_md(features),
        state_md(), state_md(), weights_md(features, tag::any), weights_md(hidden, tag::any),
        bias_md(), layer_md(hidden), state_md(), state_md(), user_scratchpad());
  }
};

LstmGeometry geometry(ffi::Span<const int64_t> x, int64_t hidden, int64_t reverse) {
  return LstmGeometry{x[0], x[1], x[2], hidden, reverse != 0};
}

struct Forward {
  dnnl::lstm_forward::primitive_desc pd;
  dnnl::lstm_forward primitive;
};

struct Backward {
  dnnl::lstm_backward::primitive_desc pd;
  dnnl::lstm_backward primitive;
};

PrimitiveCache<Forward> training_cache, inference_cache;
PrimitiveCache<Backward> backward_cache;

// The forward primitive for training (it fills a workspace for the backward pass) or for
// inference (none: oneDNN may choose faster kernels and weight layouts).
std::shared_ptr<Forward> forward_entry(const LstmGeometry& g, bool training) {
  auto kind = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
  return (training ? training_cache : inference_cache).get(g.key(), [&] {
    auto pd = g.forward_pd(kind);
    return Forward{pd, dnnl::lstm_forward(pd)};
  });
}


// Per-thread buffers reused from call to call, one slot per buffer that can be live at once.
enum Slot {
  kWeightsLayer,
  kWeightsIter,
  kDiffWeightsLayer,
  kDiffWeightsIter,
  kScratchpad,
  kRecomputed,  // y, h_T, c_T of a forward pass run again for its workspace
  kSlots
};


// The workspaces of the last few forward passes, kept here until their backward passes, which
// name them by the ticket the forward pass returned. The workspace (the gates and states of
// every step, 66 MB at H=256, T=100, batch 32) is not an XLA buffer: XLA maps a buffer that
// large afresh for every run of the program, and faulting its pages in cost as much as a
// third of the training step. A backward pass whose workspace has been taken by later forward
// passes (more than kWorkspaces of them in between, e.g. a vmap over many ensemble members)
// runs its forward pass again. Used only on the OneDnnThread, so without locks.
class WorkspacePool {
 public:
  static constexpr int kWorkspaces = 4;

  // Storage for a new forward pass's workspace, and its ticket (never 0): a workspace whose
  // backward pass has run, one already large enough first, else the oldest. The storage is
  // kept until the process exits.
  std::pair<uint32_t, void*> take(size_t bytes) {
    auto rank = [bytes](const Entry& e) {
      return std::tuple{!e.consumed, e.bytes.size() < bytes, e.ticket};
    };
    Entry* pick = &entries_[0];
    for (auto& entry : entries_) {
      if (rank(entry) < rank(*pick)) pick = &entry;
    }
    pick->ticket = ++last_ticket_ == 0 ? ++last_ticket_ : last_ticket_;
    pick->consumed = false;
    if (pick->bytes.size() < bytes) pick->bytes.resize(bytes);
    return {pick->ticket, pick->bytes.data()};
  }

  // The workspace of `ticket`, marked free for reuse (it stays readable until then: a second
  // backward pass of one forward pass finds it too); nullptr when a later forward pass took it.
  void* find(uint32_t ticket) {
    for (auto& entry : entries_) {
      if (entry.ticket != ticket || ticket == 0) continue;
      entry.consumed = true;
      return entry.bytes.data();
    }
    return nullptr;
  }

  static WorkspacePool& get() {
    static auto* pool = new WorkspacePool();
    return *pool;
  }

 private:
  struct Entry {
    uint32_t ticket = 0;
    bool consumed = true;
    std::vector<char> bytes;
  };
  std::array<Entry, kWorkspaces> entries_;
  uint32_t last_ticket_ = 0;
};



// Zeroed memory for a weight gradient in oneDNN's layout `want` (the backward primitive adds
// into it): the caller's ldigo buffer itself when the layouts agree.
memory zeroed_gradient(const memory::desc& want, const memory::desc& user, void* data, Slot slot) {
  bool direct = want == user;
  memory out(want, cpu_engine(), direct ? data : thread_scratch(want.get_size(), slot));
  std::memset(out.get_data_handle(), 0, want.get_size());
  return out;
}

// The operands of one LSTM call, as raw pointers.
struct Operands {
  const float *x, *h0, *c0, *w_ih, *w_hh, *bias;
};

memory as_memory(const memory::desc& md, const void* data) {
  return memory(md, cpu_engine(), const_cast<void*>(data));
}

// Runs the forward primitive: y (T, N, H), h_T and c_T (N, H) into `y`, `h_last`, `c_last`;
// for training (`workspace` not null) the workspace into `workspace`.
void run_forward(const LstmGeometry& g, const Operands& in, float* y, float* h_last,
                 float* c_last, void* workspace) {
  auto entry = forward_entry(g, workspace != nullptr);
  const auto& pd = entry->pd;
  auto& s = cpu_stream();
  memory w_layer = in_layout(pd.weights_layer_desc(), g.weights_md(g.features, tag::ldigo),
                              in.w_ih, kWeightsLayer);
  memory w_iter = in_layout(pd.weights_iter_desc(), g.weights_md(g.hidden, tag::ldigo), in.w_hh,
                             kWeightsIter);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC_LAYER, as_memory(pd.src_layer_desc(), in.x)},
      {DNNL_ARG_SRC_ITER, as_memory(pd.src_iter_desc(), in.h0)},
      {DNNL_ARG_SRC_ITER_C, as_memory(pd.src_iter_c_desc(), in.c0)},
      {DNNL_ARG_WEIGHTS_LAYER, w_layer},
      {DNNL_ARG_WEIGHTS_ITER, w_iter},
      {DNNL_ARG_BIAS, as_memory(pd.bias_desc(), in.bias)},
      {DNNL_ARG_DST_LAYER, as_memory(pd.dst_layer_desc(), y)},
      {DNNL_ARG_DST_ITER, as_memory(pd.dst_iter_desc(), h_last)},
      {DNNL_ARG_DST_ITER_C, as_memory(pd.dst_iter_c_desc(), c_last)},
      {DNNL_ARG_SCRATCHPAD, scratchpad(pd, kScratchpad)}};
  if (workspace != nullptr) args[DNNL_ARG_WORKSPACE] = as_memory(pd.workspace_desc(), workspace);
  entry->primitive.execute(s, args);
  s.wait();
}

ffi::Error LstmForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> h0,
                           ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> w_ih,
                           ffi::Buffer<ffi::F32> w_hh, ffi::Buffer<ffi::F32> bias,
                           ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::F32> h_last,
                           ffi::ResultBuffer<ffi::F32> c_last,
                           ffi::ResultBuffer<ffi::U32> ticket, int64_t reverse) {
  return on_onednn_thread("jaxnets LSTM forward", [&] {
      auto g = geometry(x.dimensions(), h0.dimensions()[1], reverse);
      auto [number, workspace] =
          WorkspacePool::get().take(forward_entry(g, true)->pd.workspace_desc().get_size());
      Operands in{x.typed_data(),    h0.typed_data(),   c0.typed_data(),
                  w_ih.typed_data(), w_hh.typed_data(), bias.typed_data()};
      run_forward(g, in, y->typed_data(), h_last->typed_data(), c_last->typed_data(), workspace);
      ticket->typed_data()[0] = number;
  });
}

ffi::Error LstmInferenceImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> h0,
                             ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> w_ih,
                             ffi::Buffer<ffi::F32> w_hh, ffi::Buffer<ffi::F32> bias,
                             ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::F32> h_last,
                             ffi::ResultBuffer<ffi::F32> c_last, int64_t reverse) {
  return on_onednn_thread("jaxnets LSTM inference", [&] {
      Operands in{x.typed_data(),    h0.typed_data(),   c0.typed_data(),
                  w_ih.typed_data(), w_hh.typed_data(), bias.typed_data()};
      run_forward(geometry(x.dimensions(), h0.dimensions()[1], reverse), in, y->typed_data(),
                  h_last->typed_data(), c_last->typed_data(), nullptr);
  });
}

ffi::Error LstmBackwardImpl(
    ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
    ffi::Buffer<ffi::F32> w_ih, ffi::Buffer<ffi::F32> w_hh, ffi::Buffer<ffi::F32> bias,
    ffi::Buffer<ffi::F32> y, ffi::Buffer<ffi::F32> h_last, ffi::Buffer<ffi::F32> c_last,
    ffi::Buffer<ffi::U32> ticket, ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> dh_last,
    ffi::Buffer<ffi::F32> dc_last, ffi::ResultBuffer<ffi::F32> dx,
    ffi::ResultBuffer<ffi::F32> dh0, ffi::ResultBuffer<ffi::F32> dc0,
    ffi::ResultBuffer<ffi::F32> dw_ih, ffi::ResultBuffer<ffi::F32> dw_hh,
    ffi::ResultBuffer<ffi::F32> dbias, int64_t reverse) {
  return on_onednn_thread("jaxnets LSTM backward", [&] {
      auto g = geometry(x.dimensions(), h0.dimensions()[1], reverse);
      auto entry = backward_cache.get(g.key(), [&] {
        auto ih = g.weights_md(g.features, tag::any), hh = g.weights_md(g.hidden, tag::any);
        auto pd = dnnl::lstm_backward::primitive_desc(
            cpu_engine(), dnnl::prop_kind::backward, g.direction(), g.layer_md(g.features),
            g.state_md(), g.state_md(), ih, hh, g.bias_md(), g.layer_md(g.hidden), g.state_md(),
            g.state_md(), g.layer_md(g.features), g.state_md(), g.state_md(), ih, hh,
            g.bias_md(), g.layer_md(g.hidden), g.state_md(), g.state_md(),
            forward_entry(g, true)->pd, user_scratchpad());
        return Backward{pd, dnnl::lstm_backward(pd)};
      });
      const auto& pd = entry->pd;
      Operands in{x.typed_data(),    h0.typed_data(),   c0.typed_data(),
                  w_ih.typed_data(), w_hh.typed_data(), bias.typed_data()};
      void* workspace = WorkspacePool::get().find(ticket.typed_data()[0]);
      if (workspace == nullptr) {
        auto [fresh, storage] = WorkspacePool::get().take(pd.workspace_desc().get_size());
        size_t y_size = y.element_count(), state_size = h_last.element_count();
        auto* again = static_cast<float*>(
            thread_scratch((y_size + 2 * state_size) * sizeof(float), kRecomputed));
        run_forward(g, in, again, again + y_size, again + y_size + state_size, storage);
        workspace = WorkspacePool::get().find(fresh);  // and free for reuse after this pass
      }
      auto& s = cpu_stream();
      auto& e = cpu_engine();
      auto user_ih = g.weights_md(g.features, tag::ldigo);
      auto user_hh = g.weights_md(g.hidden, tag::ldigo);
      memory w_layer = in_layout(pd.weights_layer_desc(), user_ih, in.w_ih, kWeightsLayer);
      memory w_iter = in_layout(pd.weights_iter_desc(), user_hh, in.w_hh, kWeightsIter);
      memory dw_layer = zeroed_gradient(pd.diff_weights_layer_desc(), user_ih,
                                        dw_ih->typed_data(), kDiffWeightsLayer);
      memory dw_iter = zeroed_gradient(pd.diff_weights_iter_desc(), user_hh, dw_hh->typed_data(),
                                       kDiffWeightsIter);
      memory db(pd.diff_bias_desc(), e, dbias->typed_data());
      std::memset(dbias->typed_data(), 0, pd.diff_bias_desc().get_size());
      entry->primitive.execute(
          s, {{DNNL_ARG_SRC_LAYER, as_memory(pd.src_layer_desc(), in.x)},
              {DNNL_ARG_SRC_ITER, as_memory(pd.src_iter_desc(), in.h0)},
              {DNNL_ARG_SRC_ITER_C, as_memory(pd.src_iter_c_desc(), in.c0)},
              {DNNL_ARG_WEIGHTS_LAYER, w_layer},
              {DNNL_ARG_WEIGHTS_ITER, w_iter},
              {DNNL_ARG_BIAS, as_memory(pd.bias_desc(), in.bias)},
              {DNNL_ARG_DST_LAYER, as_memory(pd.dst_layer_desc(), y.typed_data())},
              {DNNL_ARG_DST_ITER, as_memory(pd.dst_iter_desc(), h_last.typed_data())},
              {DNNL_ARG_DST_ITER_C, as_memory(pd.dst_iter_c_desc(), c_last.typed_data())},
              {DNNL_ARG_WORKSPACE, as_memory(pd.workspace_desc(), workspace)},
              {DNNL_ARG_DIFF_DST_LAYER, as_memory(pd.diff_dst_layer_desc(), dy.typed_data())},
              {DNNL_ARG_DIFF_DST_ITER, as_memory(pd.diff_dst_iter_desc(), dh_last.typed_data())},
              {DNNL_ARG_DIFF_DST_ITER_C,
               as_memory(pd.diff_dst_iter_c_desc(), dc_last.typed_data())},
              {DNNL_ARG_DIFF_SRC_LAYER, memory(pd.diff_src_layer_desc(), e, dx->typed_data())},
              {DNNL_ARG_DIFF_SRC_ITER, memory(pd.diff_src_iter_desc(), e, dh0->typed_data())},
              {DNNL_ARG_DIFF_SRC_ITER_C, memory(pd.diff_src_iter_c_desc(), e, dc0->typed_data())},
              {DNNL_ARG_DIFF_WEIGHTS_LAYER, dw_layer},
              {DNNL_ARG_DIFF_WEIGHTS_ITER, dw_iter},
              {DNNL_ARG_DIFF_BIAS, db},
              {DNNL_ARG_SCRATCHPAD, scratchpad(pd, kScratchpad)}});
      for (auto [grad, user, data] : {std::tuple{dw_layer, user_ih, dw_ih->typed_data()},
                                      std::tuple{dw_iter, user_hh, dw_hh->typed_data()}}) {
        if (grad.get_desc() == user) continue;
        memory out(user, e, data);
        reorder(grad, out);
      }
      s.wait();
  });
}

}  // namespace
}  // namespace jaxnets

using F32Buffer = xla::ffi::Buffer<xla::ffi::F32>;
using TicketBuffer = xla::ffi::Buffer<xla::ffi::U32>;  // names a workspace the library keeps

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnetsLstmForward, jaxnets::LstmForwardImpl,
                              xla::ffi::Ffi::Bind()
                                  .Arg<F32Buffer>()  // x
                                  .Arg<F32Buffer>()  // h0
                                  .Arg<F32Buffer>()  // c0
                                  .Arg<F32Buffer>()  // w_ih
                                  .Arg<F32Buffer>()  // w_hh
                                  .Arg<F32Buffer>()  // bias
                                  .Ret<F32Buffer>()  // y
                                  .Ret<F32Buffer>()  // h_T
                                  .Ret<F32Buffer>()  // c_T
                                  .Ret<TicketBuffer>()  // ticket of the workspace
                                  .Attr<int64_t>("reverse"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnetsLstmInference, jaxnets::LstmInferenceImpl,
                              xla::ffi::Ffi::Bind()
                                  .Arg<F32Buffer>()  // x
                                  .Arg<F32Buffer>()  // h0
                                  .Arg<F32Buffer>()  // c0
                                  .Arg<F32Buffer>()  // w_ih
                                  .Arg<F32Buffer>()  // w_hh
                                  .Arg<F32Buffer>()  // bias
                                  .Ret<F32Buffer>()  // y
                                  .Ret<F32Buffer>()  // h_T
                                  .Ret<F32Buffer>()  // c_T
                                  .Attr<int64_t>("reverse"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnetsLstmBackward, jaxnets::LstmBackwardImpl,
                              xla::ffi::Ffi::Bind()
                                  .Arg<F32Buffer>()  // x
                                  .Arg<F32Buffer>()  // h0
                                  .Arg<F32Buffer>()  // c0
                                  .Arg<F32Buffer>()  // w_ih
                                  .Arg<F32Buffer>()  // w_hh
                                  .Arg<F32Buffer>()  // bias
                                  .Arg<F32Buffer>()  // y
                                  .Arg<F32Buffer>()  // h_T
                                  .Arg<F32Buffer>()  // c_T
                                  .Arg<TicketBuffer>()  // ticket of the workspace
                                  .Arg<F32Buffer>()  // dy
                                  .Arg<F32Buffer>()  // dh_T
                                  .Arg<F32Buffer>()  // dc_T
                                  .Ret<F32Buffer>()  // dx
                                  .Ret<F32Buffer>()  // dh0
                                  .Ret<F32Buffer>()  // dc0
                                  .Ret<F32Buffer>()  // dw_ih
                                  .Ret<F32Buffer>()  // dw_hh
                                  .Ret<F32Buffer>()  // dbias
                                  .Attr<int64_t>("reverse"));
