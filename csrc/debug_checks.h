// The opt-in value checks of the CUDA ops. Torch-free.
//
// Every op entry checks what the host knows for free (dims, dtypes, devices, sizes, scalar
// arguments) on every call. Checks of tensor *values* (finite features or embeddings, seeds
// inside the volume) need the values on the host:
//   - on the CPU they are always made: the data are in host memory, reading them is no
//     synchronisation;
//   - on CUDA they are made only while debug checks are on, because each one waits for the
//     device (a host synchronisation, which also makes the op impossible to capture in a CUDA
//     graph). With them off, a CUDA op never reads device memory on the host: non-finite inputs
//     propagate (NaN outputs) or are skipped as each op documents.
// Debug checks start on when the environment variable WSLS_DEBUG_CHECKS is set to anything but
// "" or "0" when the library loads; Python switches them with wsls.ops.debug_checks(bool), C++
// with wsls::set_debug_checks(bool). The failing checks raise the same one-line errors on both
// devices.
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace wsls {

namespace detail {
inline std::atomic<bool>& debug_checks_flag() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("WSLS_DEBUG_CHECKS");
    return env != nullptr && std::strcmp(env, "") != 0 && std::strcmp(env, "0") != 0;
  }()};
  return flag;
}
}  // namespace detail

inline bool debug_checks_enabled() {
  return detail::debug_checks_flag().load(std::memory_order_relaxed);
}

// Returns the previous setting.
inline bool set_debug_checks(bool enabled) {
  return detail::debug_checks_flag().exchange(enabled, std::memory_order_relaxed);
}

}  // namespace wsls
