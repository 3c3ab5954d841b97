// Shared pieces of jaxnets' oneDNN kernels: the CPU engine, a per-thread stream, a cache of
// primitives keyed by their shapes, and the conversion of oneDNN errors to XLA FFI errors.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <unordered_map>
#include <vector>

#include <omp.h>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace jaxnets {

namespace ffi = xla::ffi;

inline dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

inline dnnl::stream& cpu_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

// A thread-safe map from a key (the shapes and attributes of a call) to the primitives built
// for it: oneDNN's primitive creation JIT-compiles kernels, so it is done once per shape.
template <typename Entry>
class PrimitiveCache {
 public:
  template <typename Make>
  std::shared_ptr<Entry> get(const std::string& key, Make make) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = entries_.find(key);
    if (found != entries_.end()) return found->second;
    auto entry = std::make_shared<Entry>(make());
    entries_.emplace(key, entry);
    return entry;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries_;
};

inline std::string dims_key(std::initializer_list<dnnl::memory::dims> all) {
  std::string key;
  for (const auto& dims : all) {
    for (auto d : dims) key += std::to_string(d) + ",";
    key += ";";
  }
  return key;
}

// The primitives take their scratchpad from the caller: oneDNN's own (library mode) is sized
// for the thread that created the primitive, and XLA runs a custom call on any of its threads.
inline dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// Every oneDNN execution runs on one thread of its own. With libgomp every thread that enters
// a parallel region gets its own team of OpenMP threads; XLA runs a custom call on any thread
// of its pool, so calls from several of them left several teams on the cores, libgomp then
// counted more threads than cores and its barriers (a few per LSTM time step) slept instead of
// spinning: the gradient of an LSTM (H=256, T=100, batch 32) took 111 ms, not 51.
class OneDnnThread {
 public:
  static OneDnnThread& get() {
    static auto* thread = new OneDnnThread();  // never destroyed: the thread runs until exit
    return *thread;
  }

  // Runs `work` there and waits; rethrows what it throws.
  void run(const std::function<void()>& work) {
    std::packaged_task<void()> task(work);
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    done.get();
  }

 private:
  OneDnnThread() {
    std::thread([this] {
      for (;;) {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !queue_.empty(); });
        auto task = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        task();
      }
    }).detach();
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
};

// Buffers of the oneDNN thread reused from call to call, one slot per buffer that can be live
// at once within a call (each kernel file names its slots): a fresh allocation per call would
// pay its page faults again every step.
constexpr int kScratchSlots = 8;

inline void* thread_scratch(size_t bytes, int slot) {
  thread_local std::array<std::vector<char>, kScratchSlots> buffers;
  auto& buffer = buffers.at(slot);
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

// The scratchpad a primitive of `pd` (made with user_scratchpad()) needs, in `slot`.
inline dnnl::memory scratchpad(const dnnl::primitive_desc_base& pd, int slot) {
  auto md = pd.scratchpad_desc();
  return dnnl::memory(md, cpu_engine(), thread_scratch(md.get_size(), slot));
}

// Copies `from` into `to` (the same tensor in two layouts). A small tensor is copied by this
// thread alone: waking the OpenMP team for a LeNet-5 kernel of 2,400 numbers cost ~65 us, a
// twentieth of the training step, and ResNet-18's 2x2 activations (128 KB) took ~80 us each.
inline void reorder(dnnl::memory from, dnnl::memory to) {  // handles: copies are cheap
  constexpr size_t kSmallBytes = 256 << 10;
  int team = omp_get_max_threads();
  bool small = from.get_desc().get_size() < kSmallBytes;
  if (small) omp_set_num_threads(1);
  dnnl::reorder(from, to).execute(cpu_stream(), from, to);
  if (small) omp_set_num_threads(team);
}

// The caller's operand `data` (layout `user`) in the layout `want` a primitive reads: the
// buffer itself when they agree, else a copy reordered into `slot`.
inline dnnl::memory in_layout(const dnnl::memory::desc& want, const dnnl::memory::desc& user,
                               const void* data, int slot) {
  dnnl::memory user_mem(user, cpu_engine(), const_cast<void*>(data));
  if (want == user) return user_mem;
  dnnl::memory out(want, cpu_engine(), thread_scratch(want.get_size(), slot));
  reorder(user_mem, out);
  return out;
}

// Where a primitive writes a result the caller wants in layout `user` at `data`: the buffer
// itself when the layouts agree, else scratch in `slot` that copy_out() reorders into it.
inline dnnl::memory out_layout(const dnnl::memory::desc& want, const dnnl::memory::desc& user,
                               void* data, int slot) {
  if (want == user) return dnnl::memory(user, cpu_engine(), data);
  return dnnl::memory(want, cpu_engine(), thread_scratch(want.get_size(), slot));
}

inline void copy_out(dnnl::memory computed, const dnnl::memory::desc& user, void* data) {
  if (computed.get_desc() != user) reorder(computed, dnnl::memory(user, cpu_engine(), data));
}

// Runs `body` on the calling thread; an exception becomes an XLA FFI error naming `what`.
template <typename Body>
ffi::Error guarded(const char* what, Body body) {
  try {
    body();
    return ffi::Error::Success();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string(what) + ": oneDNN: " + e.what());
  } catch (const std::exception& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string(what) + ": " + e.what());
  }
}

// Runs `body` on the OneDnnThread (see there); errors as guarded().
template <typename Body>
ffi::Error on_onednn_thread(const char* what, Body body) {
  return guarded(what, [&] { OneDnnThread::get().run(body); });
}

}  // namespace jaxnets
