// Node-API bindings of the cuda backend: memory, transfers, timing and one entry point per kernel
// family. Device pointers cross into JavaScript as Numbers (device addresses fit in 53 bits).
// Every binding converts a CudaError into a JS Error; the TypeScript side adds the kernel's name
// and input shapes.
#include <napi.h>

#include <cmath>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "collectives.h"
#include "device.h"
#include "kernels.h"
#include "launchers.h"

namespace tsgpt {
namespace {

// Deliberately never destroyed at process exit: static destructors run after the CUDA runtime has
// begun its own teardown, and CUDA calls from there hang or crash. dispose() frees it explicitly.
Device* gDevice = nullptr;

Device& dev() {
  if (!gDevice) throw CudaError("the cuda backend's device is not initialised (call init first)");
  return *gDevice;
}

// The JavaScript arguments of one call, checked against the binding's declared names: the count on
// construction, each argument's type as it is read. A wrong call is a JS Error naming the function and the
// argument (never a crash or a silently truncated value). Kernel launchers (launchers.h) read theirs through
// it too.
class Args : public LaunchArgs {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn, const char* const* names, size_t count)
      : info_(info), fn_(fn), names_(names) {
    if (info.Length() != count) {
      std::string want;
      for (size_t i = 0; i < count; ++i) want += (i ? ", " : "") + std::string(names[i]);
      throw CudaError(std::string(fn) + "(" + want + "): called with " + std::to_string(info.Length()) + " argument(s), takes " +
                      std::to_string(count));
    }
  }
  template <size_t N>
  Args(const Napi::CallbackInfo& info, const char* fn, const char* const (&names)[N]) : Args(info, fn, names, N) {}

  uintptr_t pointer(int i) const override {
    const double d = numberOf(i, "a device address (an integer Number ≥ 0)");
    if (!(d >= 0 && d <= 9007199254740992.0 && d == std::floor(d))) outOfRange(i, "a device address (an integer Number ≥ 0)");
    return static_cast<uintptr_t>(d);
  }
  int64_t integer(int i) const override {
    const double d = numberOf(i, "an integer");
    if (!(std::fabs(d) <= 9007199254740992.0 && d == std::floor(d))) outOfRange(i, "an integer");
    return static_cast<int64_t>(d);
  }
  double number(int i) const override { return numberOf(i, "a number"); }
  bool boolean(int i) const override {
    bool b = false;
    if (napi_get_value_bool(info_.Env(), info_[i], &b) != napi_ok) fail(i, "a boolean");
    return b;
  }
  NumberTable table(int i) const override {
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    if (!info_[i].IsTypedArray() ||
        napi_get_typedarray_info(info_.Env(), info_[i], &type, &length, &data, nullptr, nullptr) != napi_ok ||
        type != napi_float64_array) {
      fail(i, "a Float64Array");
    }
    return {static_cast<const double*>(data), static_cast<int64_t>(length)};
  }
  [[noreturn]] void outOfRange(int i, const char* type) const override { fail(i, type); }

  Napi::Array array(int i) const {
    if (!info_[i].IsArray()) fail(i, "an array");
    return info_[i].As<Napi::Array>();
  }
  Napi::TypedArray typedArray(int i) const {
    if (!info_[i].IsTypedArray()) fail(i, "a typed array");
    return info_[i].As<Napi::TypedArray>();
  }
  Napi::Buffer<char> buffer(int i) const {
    if (!info_[i].IsBuffer()) fail(i, "a Buffer");
    return info_[i].As<Napi::Buffer<char>>();
  }
  template <typename T>
  T* ptr(int i) const { return reinterpret_cast<T*>(pointer(i)); }

 private:
  double numberOf(int i, const char* type) const {
    double d = 0;
    if (napi_get_value_double(info_.Env(), info_[i], &d) != napi_ok) fail(i, type);
    return d;
  }
  [[noreturn]] void fail(int i, const char* type) const {
    const Napi::Value v = info_[i];
    const std::string got = v.IsNumber() ? std::to_string(v.As<Napi::Number>().DoubleValue())
                            : v.IsBoolean() ? (v.As<Napi::Boolean>().Value() ? "true" : "false")
                            : v.IsUndefined() ? "undefined" : v.IsNull() ? "null" : v.IsString() ? "a string" : "an object";
    throw CudaError(std::string(fn_) + ": argument " + std::to_string(i + 1) + " (" + names_[i] + ") must be " + type + ", got " + got);
  }
  const Napi::CallbackInfo& info_;
  const char* fn_;
  const char* const* names_;
};

Napi::Value ptrValue(Napi::Env env, void* p) {
  return Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(p)));
}

// dims = args[first], then one stride array per operand.
StridedShape shapeArg(const Args& args, int first, int operands) {
  StridedShape s{};
  const Napi::Array dims = args.array(first);
  if (dims.Length() > uint32_t(kMaxRank)) throw CudaError("rank above 8 after merging dimensions");
  s.rank = static_cast<int>(dims.Length());
  for (int k = 0; k < s.rank; ++k) s.dims[k] = dims.Get(uint32_t(k)).As<Napi::Number>().Int64Value();
  for (int o = 0; o < operands; ++o) {
    const Napi::Array st = args.array(first + 1 + o);
    if (st.Length() != dims.Length()) throw CudaError("a stride array's length differs from the rank");
    for (int k = 0; k < s.rank; ++k) s.strides[o][k] = st.Get(uint32_t(k)).As<Napi::Number>().Int64Value();
  }
  return s;
}

using Binding = Napi::Value (*)(const Napi::CallbackInfo&);
template <Binding F>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const CudaError& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

// A binding's argument names, declared once; the count is checked here, each type where it is read.
#define TSGPT_ARGS(fn, ...)                            \
  static const char* const kArgNames[] = {__VA_ARGS__}; \
  const Args a(info, fn, kArgNames)
#define TSGPT_NO_ARGS(fn) const Args a(info, fn, nullptr, 0)

// ---- device and memory ----

Napi::Value probe(const Napi::CallbackInfo& info) {
  TSGPT_NO_ARGS("probe");
  int count = 0, driver = 0, runtime = 0;
  check(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
  check(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("deviceCount", count);
  o.Set("driverVersion", driver);
  o.Set("runtimeVersion", runtime);
  return o;
}

Napi::Value init(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("init", "ordinal");
  const int ordinal = static_cast<int>(a.integer(0));
  if (!gDevice || gDevice->ordinal() != ordinal) {
    delete gDevice;
    gDevice = nullptr;
    gDevice = new Device(ordinal);
  }
  const cudaDeviceProp& p = gDevice->props();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("name", p.name);
  o.Set("ordinal", ordinal);
  o.Set("multiProcessorCount", p.multiProcessorCount);
  o.Set("totalMemory", static_cast<double>(p.totalGlobalMem));
  o.Set("computeCapability", std::to_string(p.major) + "." + std::to_string(p.minor));
  return o;
}

Napi::Value dispose(const Napi::CallbackInfo& info) {
  TSGPT_NO_ARGS("dispose");
  ncclClose();  // a communicator must not outlive its device's stream
  delete gDevice;
  gDevice = nullptr;
  return info.Env().Undefined();
}

Napi::Value alloc(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("alloc", "bytes");
  return ptrValue(info.Env(), dev().alloc(static_cast<uint64_t>(a.integer(0))));
}

Napi::Value freeBuffer(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("free", "ptr");
  dev().free(a.ptr<void>(0));
  return info.Env().Undefined();
}

Napi::Value memory(const Napi::CallbackInfo& info) {
  TSGPT_NO_ARGS("memory");
  const MemoryStats s = dev().memory();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("bytesInUse", static_cast<double>(s.inUse));
  o.Set("peakBytesInUse", static_cast<double>(s.peak));
  o.Set("poolReservedBytes", static_cast<double>(s.poolReserved));
  o.Set("poolUsedBytes", static_cast<double>(s.poolUsed));
  o.Set("liveBuffers", static_cast<double>(s.live));
  o.Set("allocRetries", static_cast<double>(s.allocRetries));
  return o;
}

// ---- transfers and synchronisation ----

Napi::Value upload(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("upload", "ptr", "data");
  void* dst = a.ptr<void>(0);
  const Napi::TypedArray src = a.typedArray(1);
  const size_t bytes = src.ByteLength();
  if (bytes == 0) return info.Env().Undefined();
  const uint8_t* data = static_cast<const uint8_t*>(src.ArrayBuffer().Data()) + src.ByteOffset();
  if (bytes <= uint64_t(kSmallUploadBytes)) {  // scalars and small constants: never blocks the host
    check(launchUploadSmall(dev().stream(), dst, data, int64_t(bytes)), "upload (small, through kernel arguments)");
    return info.Env().Undefined();
  }
  // From pageable memory: the runtime stages the source before returning, so JS may reuse it.
  check(cudaMemcpyAsync(dst, data, bytes, cudaMemcpyHostToDevice, dev().stream()), "upload (cudaMemcpyAsync host→device)");
  return info.Env().Undefined();
}

Napi::Value readSync(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("readSync", "ptr", "bytes");
  void* src = a.ptr<void>(0);
  const size_t bytes = static_cast<size_t>(a.integer(1));
  Napi::ArrayBuffer out = Napi::ArrayBuffer::New(info.Env(), bytes);
  check(cudaStreamSynchronize(dev().stream()), "readSync (cudaStreamSynchronize)");
  if (bytes > 0) check(cudaMemcpy(out.Data(), src, bytes, cudaMemcpyDeviceToHost), "readSync (cudaMemcpy device→host)");
  return out;
}

// Waits on a libuv worker thread for `event`, then settles the promise on the JS thread.
class EventWorker : public Napi::AsyncWorker {
 public:
  enum Kind { kSync, kRead, kTimer };
  EventWorker(Napi::Env env, Kind kind, cudaEvent_t event)
      : Napi::AsyncWorker(env), kind_(kind), event_(event), deferred_(Napi::Promise::Deferred::New(env)) {}
  ~EventWorker() override {
    if (event_) cudaEventDestroy(event_);
    if (start_) cudaEventDestroy(start_);
    if (pinned_ && gDevice) gDevice->releasePinned(pinned_, bytes_);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void setRead(void* pinned, size_t bytes) { pinned_ = pinned; bytes_ = bytes; }
  void setTimer(cudaEvent_t start) { start_ = start; }

  void Execute() override {
    const cudaError_t e = cudaEventSynchronize(event_);
    if (e != cudaSuccess) {
      SetError(std::string(kind_ == kRead ? "read" : kind_ == kTimer ? "time" : "sync") +
               " (waiting for the stream) failed: " + cudaErrorText(e));
      return;
    }
    if (kind_ == kTimer) {
      const cudaError_t t = cudaEventElapsedTime(&ms_, start_, event_);
      if (t != cudaSuccess) SetError("time (cudaEventElapsedTime) failed: " + cudaErrorText(t));
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (kind_ == kRead) {
      Napi::ArrayBuffer out = Napi::ArrayBuffer::New(env, bytes_);
      std::memcpy(out.Data(), pinned_, bytes_);
      deferred_.Resolve(out);
    } else if (kind_ == kTimer) {
      deferred_.Resolve(Napi::Number::New(env, ms_));
    } else {
      deferred_.Resolve(env.Undefined());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Kind kind_;
  cudaEvent_t event_ = nullptr;
  cudaEvent_t start_ = nullptr;
  void* pinned_ = nullptr;
  size_t bytes_ = 0;
  float ms_ = 0.f;
  Napi::Promise::Deferred deferred_;
};

cudaEvent_t recordEvent(unsigned flags, const char* what) {
  cudaEvent_t e;
  check(cudaEventCreateWithFlags(&e, flags), what);
  check(cudaEventRecord(e, dev().stream()), what);
  return e;
}

Napi::Value read(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("read", "ptr", "bytes");
  void* src = a.ptr<void>(0);
  const size_t bytes = static_cast<size_t>(a.integer(1));
  void* pinned = dev().acquirePinned(bytes);
  try {
    if (bytes > 0) check(cudaMemcpyAsync(pinned, src, bytes, cudaMemcpyDeviceToHost, dev().stream()), "read (cudaMemcpyAsync device→host)");
  } catch (...) {
    dev().releasePinned(pinned, bytes);
    throw;
  }
  auto* w = new EventWorker(info.Env(), EventWorker::kRead, recordEvent(cudaEventDisableTiming, "read (event)"));
  w->setRead(pinned, bytes);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value synchronize(const Napi::CallbackInfo& info) {
  TSGPT_NO_ARGS("synchronize");
  check(cudaStreamSynchronize(dev().stream()), "cudaStreamSynchronize");
  return info.Env().Undefined();
}

Napi::Value sync(const Napi::CallbackInfo& info) {
  TSGPT_NO_ARGS("sync");
  auto* w = new EventWorker(info.Env(), EventWorker::kSync, recordEvent(cudaEventDisableTiming, "sync (event)"));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// timerStart() → id; timerEnd(id) → Promise<ms between the two points on the stream>.
std::unordered_map<int64_t, cudaEvent_t> gTimers;
int64_t gNextTimer = 1;

Napi::Value timerStart(const Napi::CallbackInfo& info) {
  TSGPT_NO_ARGS("timerStart");
  const int64_t id = gNextTimer++;
  gTimers[id] = recordEvent(cudaEventDefault, "time (start event)");
  return Napi::Number::New(info.Env(), static_cast<double>(id));
}

Napi::Value timerEnd(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("timerEnd", "id");
  auto it = gTimers.find(a.integer(0));
  if (it == gTimers.end()) throw CudaError("timerEnd: unknown timer");
  cudaEvent_t start = it->second;
  gTimers.erase(it);
  auto* w = new EventWorker(info.Env(), EventWorker::kTimer, recordEvent(cudaEventDefault, "time (end event)"));
  w->setTimer(start);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// ---- kernels that take shapes or the device itself (the others are registered launchers: launchers.h) ----

Napi::Value binary(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("binary", "op", "dtype", "a", "aBf16", "b", "bBf16", "out", "dims", "aStrides", "bStrides");
  check(launchBinary(dev().stream(), int(a.integer(0)), int(a.integer(1)), a.ptr<void>(2), a.boolean(3), a.ptr<void>(4),
                     a.boolean(5), a.ptr<void>(6), shapeArg(a, 7, 2)),
        "binary kernel launch");
  return info.Env().Undefined();
}

Napi::Value copy(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("copy", "elemBytes", "src", "dst", "dims", "srcStrides", "dstStrides");
  check(launchStridedCopy(dev().stream(), int(a.integer(0)), a.ptr<void>(1), a.ptr<void>(2), shapeArg(a, 3, 2)),
        "strided copy kernel launch");
  return info.Env().Undefined();
}

Napi::Value matmulBinding(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("matmul", "a", "b", "out", "batch", "m", "n", "k", "transA", "transB", "strideA", "strideB", "precision", "outBf16");
  matmul(dev(), a.ptr<void>(0), a.ptr<void>(1), a.ptr<void>(2), a.boolean(12), a.integer(3), a.integer(4), a.integer(5),
         a.integer(6), a.boolean(7), a.boolean(8), a.integer(9), a.integer(10), int(a.integer(11)));
  return info.Env().Undefined();
}

// out = alpha·op(A)·op(B) + beta·C (C and out bf16 where flagged)
Napi::Value matmulAddBinding(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("matmulAdd", "a", "b", "c", "out", "bf16", "batch", "m", "n", "k", "transA", "transB", "precision", "alpha", "beta");
  const int64_t batch = a.integer(5), m = a.integer(6), n = a.integer(7), k = a.integer(8);
  matmul(dev(), a.ptr<void>(0), a.ptr<void>(1), a.ptr<void>(3), a.boolean(4), batch, m, n, k, a.boolean(9), a.boolean(10), m * k,
         k * n, int(a.integer(11)), a.ptr<const void>(2), float(a.number(12)), float(a.number(13)));
  return info.Env().Undefined();
}

// Whether new matmul plans time cuBLASLt's first candidates (matmul.cc)
Napi::Value setMatmulAutotuneBinding(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("setMatmulAutotune", "on");
  setMatmulAutotune(a.boolean(0));
  return info.Env().Undefined();
}

// out = alpha·A·Bᵀ + beta·out over FP8 operands (the FP8 head's GEMMs)
Napi::Value matmulFp8Binding(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("matmulFp8", "a", "aE5m2", "b", "bE5m2", "out", "outBf16", "m", "n", "k", "alpha", "fastAccum", "beta");
  matmulFp8(dev(), a.ptr<void>(0), a.boolean(1), a.ptr<void>(2), a.boolean(3), a.ptr<void>(4), a.boolean(5), a.integer(6),
            a.integer(7), a.integer(8), float(a.number(9)), a.boolean(10), float(a.number(11)));
  return info.Env().Undefined();
}

// A registered launcher (launchers.h), called with its arguments checked against its signature.
Napi::Value callLauncher(const Napi::CallbackInfo& info) {
  const Launcher& l = *static_cast<const Launcher*>(info.Data());
  const Args a(info, l.name, l.argNames, l.arity);
  check(l.call(dev().stream(), a), (std::string(l.name) + " kernel launch").c_str());
  return info.Env().Undefined();
}

// ---- NCCL (collectives.cc) ----

Napi::Value ncclGetUniqueIdBinding(const Napi::CallbackInfo& info) {
  TSGPT_NO_ARGS("ncclGetUniqueId");
  const std::string id = ncclNewUniqueId();
  return Napi::Buffer<char>::Copy(info.Env(), id.data(), id.size());
}

Napi::Value ncclInitBinding(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("ncclInit", "uniqueId", "worldSize", "rank");
  const Napi::Buffer<char> id = a.buffer(0);
  ncclOpen(dev(), std::string(id.Data(), id.Length()), int(a.integer(1)), int(a.integer(2)));
  return info.Env().Undefined();
}

// The (inPtrs, outPtrs, counts) lists of a grouped NCCL collective, checked to have one length.
struct CollectiveBuffers {
  std::vector<const float*> in;
  std::vector<float*> out;
  std::vector<int64_t> count;
};
CollectiveBuffers collectiveBuffers(const char* name, const Napi::Array& ins, const Napi::Array& outs, const Napi::Array& counts) {
  const uint32_t n = ins.Length();
  if (outs.Length() != n || counts.Length() != n)
    throw CudaError(std::string(name) + ": inputs, outputs and counts differ in length");
  CollectiveBuffers b{std::vector<const float*>(n), std::vector<float*>(n), std::vector<int64_t>(n)};
  for (uint32_t i = 0; i < n; ++i) {
    b.in[i] = reinterpret_cast<const float*>(static_cast<uintptr_t>(ins.Get(i).As<Napi::Number>().Int64Value()));
    b.out[i] = reinterpret_cast<float*>(static_cast<uintptr_t>(outs.Get(i).As<Napi::Number>().Int64Value()));
    b.count[i] = counts.Get(i).As<Napi::Number>().Int64Value();
  }
  return b;
}

Napi::Value ncclAllReduceBinding(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("ncclAllReduce", "inPtrs", "outPtrs", "counts", "average");
  const CollectiveBuffers b = collectiveBuffers("ncclAllReduce", a.array(0), a.array(1), a.array(2));
  ncclAllReduceFloat32(dev(), b.in, b.out, b.count, a.boolean(3));
  return info.Env().Undefined();
}

Napi::Value ncclAllGatherBinding(const Napi::CallbackInfo& info) {
  TSGPT_ARGS("ncclAllGather", "inPtrs", "outPtrs", "counts");
  const CollectiveBuffers b = collectiveBuffers("ncclAllGather", a.array(0), a.array(1), a.array(2));
  ncclAllGatherFloat32(dev(), b.in, b.out, b.count);
  return info.Env().Undefined();
}

Napi::Value ncclDestroyBinding(const Napi::CallbackInfo& info) {
  TSGPT_NO_ARGS("ncclDestroy");
  ncclClose();
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Binding> fns[] = {
      {"probe", guarded<probe>},       {"init", guarded<init>},
      {"dispose", guarded<dispose>},   {"alloc", guarded<alloc>},
      {"free", guarded<freeBuffer>},   {"memory", guarded<memory>},
      {"upload", guarded<upload>},     {"readSync", guarded<readSync>},
      {"read", guarded<read>},         {"synchronize", guarded<synchronize>},
      {"sync", guarded<sync>},         {"timerStart", guarded<timerStart>},
      {"timerEnd", guarded<timerEnd>}, {"binary", guarded<binary>},
      {"copy", guarded<copy>},         {"matmul", guarded<matmulBinding>},
      {"matmulAdd", guarded<matmulAddBinding>},  {"matmulFp8", guarded<matmulFp8Binding>},
      {"setMatmulAutotune", guarded<setMatmulAutotuneBinding>},
      {"ncclGetUniqueId", guarded<ncclGetUniqueIdBinding>}, {"ncclInit", guarded<ncclInitBinding>},
      {"ncclAllReduce", guarded<ncclAllReduceBinding>},     {"ncclAllGather", guarded<ncclAllGatherBinding>},
      {"ncclDestroy", guarded<ncclDestroyBinding>},
  };
  for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
  // Every kernel file's launchers (the registry is complete: static initialisers ran when the addon loaded).
  for (const Launcher& l : launcherRegistry()) {
    if (exports.Has(l.name)) throw Napi::Error::New(env, std::string("two bindings are named ") + l.name);
    exports.Set(l.name, Napi::Function::New(env, guarded<callLauncher>, l.name, const_cast<Launcher*>(&l)));
  }
  return exports;
}

}  // namespace
}  // namespace tsgpt

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return tsgpt::Init(env, exports); }
NODE_API_MODULE(tsgpt_cuda, InitAddon)
