// Shared pieces of jaxnets' oneDNN kernels: the CPU engine, a per-thread stream, a cache of
// primitives keyed by their shapes, and the conversion of oneDNN errors to XLA FFI errors.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

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

// A buffer of at least `bytes` owned by this thread and reused from call to call, for layouts
// a primitive wants that differ from the caller's: a fresh allocation per call would pay the
// kernel's page faults again every step.
inline void* thread_scratch(size_t bytes) {
  thread_local std::vector<char> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

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

}  // namespace jaxnets
