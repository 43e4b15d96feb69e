// The registry of kernel launchers. A kernel file registers each launcher it defines with one line,
//
//   TSGPT_LAUNCHER(headGate, launchHeadGate, "o", "g", "y", "yBf16", "rows", "h");
//
// naming the JavaScript function and every argument after the stream (the count is checked at compile
// time). The addon (addon.cc) exports every registered launcher: each call checks the argument count and
// each argument's JavaScript type against the launcher's C++ signature, and a wrong call is a JS Error
// naming the function and the argument, never a crash. No Node-API here, so the kernel files still build
// without Node (CI's nvcc check, the Node-free benchmarks).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace tsgpt {

// A table of numbers from JavaScript (a Float64Array): a launcher's per-item values, such as the device addresses and
// sizes of a list of tensors (integers up to 2^53 are exact in it). Valid during the call only.
struct NumberTable {
  const double* values;
  int64_t size;
};

// One call's JavaScript arguments, read by position. Each getter checks the value's type and throws
// (naming the function and the argument) when it does not fit; the addon implements it over Node-API.
class LaunchArgs {
 public:
  virtual ~LaunchArgs() = default;
  virtual uintptr_t pointer(int i) const = 0;  // a device address: an integer Number ≥ 0 (0: none)
  virtual int64_t integer(int i) const = 0;    // an integer Number
  virtual double number(int i) const = 0;      // any Number
  virtual bool boolean(int i) const = 0;       // a Boolean
  virtual NumberTable table(int i) const = 0;  // a Float64Array
  [[noreturn]] virtual void outOfRange(int i, const char* type) const = 0;
};

struct Launcher {
  const char* name;                    // the JavaScript function's name
  const char* const* argNames;         // one per argument after the stream
  size_t arity;
  cudaError_t (*call)(cudaStream_t, const LaunchArgs&);
};

inline std::vector<Launcher>& launcherRegistry() {
  static std::vector<Launcher> registry;
  return registry;
}

template <typename T>
T launchArg(const LaunchArgs& a, int i) {
  if constexpr (std::is_pointer_v<T>) {
    return reinterpret_cast<T>(a.pointer(i));
  } else if constexpr (std::is_same_v<T, bool>) {
    return a.boolean(i);
  } else if constexpr (std::is_same_v<T, NumberTable>) {
    return a.table(i);
  } else if constexpr (std::is_integral_v<T>) {
    const int64_t v = a.integer(i);
    if (v < int64_t(std::numeric_limits<T>::min()) || v > int64_t(std::numeric_limits<T>::max())) {
      a.outOfRange(i, sizeof(T) == 4 ? "a 32-bit integer" : "an integer");
    }
    return static_cast<T>(v);
  } else {
    static_assert(std::is_floating_point_v<T>, "launcher arguments are pointers, integers, floats, bools or NumberTables");
    return static_cast<T>(a.number(i));
  }
}

template <typename Signature, Signature F>
struct LauncherBinding;

template <typename... Args, cudaError_t (*F)(cudaStream_t, Args...)>
struct LauncherBinding<cudaError_t (*)(cudaStream_t, Args...), F> {
  static constexpr size_t arity = sizeof...(Args);
  static cudaError_t call(cudaStream_t s, const LaunchArgs& a) { return callWith(s, a, std::index_sequence_for<Args...>{}); }
  template <size_t... I>
  static cudaError_t callWith(cudaStream_t s, const LaunchArgs& a, std::index_sequence<I...>) {
    return F(s, launchArg<std::decay_t<Args>>(a, int(I))...);
  }
};

template <typename Signature, Signature F, size_t N>
bool registerLauncher(const char* name, const char* const (&argNames)[N]) {
  static_assert(N == LauncherBinding<Signature, F>::arity, "TSGPT_LAUNCHER: name every argument after the stream, once");
  launcherRegistry().push_back({name, argNames, N, &LauncherBinding<Signature, F>::call});
  return true;
}

}  // namespace tsgpt

#define TSGPT_LAUNCHER(jsName, fn, ...)                                        \
  static const char* const tsgpt_launcher_args_##jsName[] = {__VA_ARGS__};    \
  [[maybe_unused]] static const bool tsgpt_launcher_##jsName =                 \
      ::tsgpt::registerLauncher<decltype(&fn), &fn>(#jsName, tsgpt_launcher_args_##jsName)
