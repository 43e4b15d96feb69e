// Node-API bindings of the cuda backend: memory, transfers, timing and one entry point per kernel
// family. Device pointers cross into JavaScript as Numbers (device addresses fit in 53 bits).
// Every binding converts a CudaError into a JS Error; the TypeScript side adds the kernel's name
// and input shapes.
#include <napi.h>

#include <cstring>
#include <unordered_map>
#include <vector>

#include "collectives.h"
#include "device.h"
#include "kernels.h"

namespace tsgpt {
namespace {

// Deliberately never destroyed at process exit: static destructors run after the CUDA runtime has
// begun its own teardown, and CUDA calls from there hang or crash. dispose() frees it explicitly.
Device* gDevice = nullptr;

Device& dev() {
  if (!gDevice) throw CudaError("the cuda backend's device is not initialised (call init first)");
  return *gDevice;
}

void* ptrArg(const Napi::CallbackInfo& info, size_t i) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(info[i].As<Napi::Number>().Int64Value()));
}
int64_t intArg(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().Int64Value();
}
double numArg(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().DoubleValue();
}
const float* floatArg(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<const float*>(ptrArg(info, i));
}
Napi::Number ptrValue(Napi::Env env, void* p) {
  return Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(p)));
}

// dims = info[first], then one stride array per operand.
StridedShape shapeArg(const Napi::CallbackInfo& info, size_t first, int operands) {
  StridedShape s{};
  const Napi::Array dims = info[first].As<Napi::Array>();
  if (dims.Length() > uint32_t(kMaxRank)) throw CudaError("rank above 8 after merging dimensions");
  s.rank = static_cast<int>(dims.Length());
  for (int k = 0; k < s.rank; ++k) s.dims[k] = dims.Get(uint32_t(k)).As<Napi::Number>().Int64Value();
  for (int o = 0; o < operands; ++o) {
    const Napi::Array st = info[first + 1 + o].As<Napi::Array>();
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

// ---- device and memory ----

Napi::Value probe(const Napi::CallbackInfo& info) {
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
  const int ordinal = static_cast<int>(intArg(info, 0));
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
  ncclClose();  // a communicator must not outlive its device's stream
  delete gDevice;
  gDevice = nullptr;
  return info.Env().Undefined();
}

Napi::Value alloc(const Napi::CallbackInfo& info) {
  return ptrValue(info.Env(), dev().alloc(static_cast<uint64_t>(intArg(info, 0))));
}

Napi::Value freeBuffer(const Napi::CallbackInfo& info) {
  dev().free(ptrArg(info, 0));
  return info.Env().Undefined();
}

Napi::Value memory(const Napi::CallbackInfo& info) {
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
  void* dst = ptrArg(info, 0);
  const Napi::TypedArray src = info[1].As<Napi::TypedArray>();
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
  void* src = ptrArg(info, 0);
  const size_t bytes = static_cast<size_t>(intArg(info, 1));
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
  void* src = ptrArg(info, 0);
  const size_t bytes = static_cast<size_t>(intArg(info, 1));
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
  check(cudaStreamSynchronize(dev().stream()), "cudaStreamSynchronize");
  return info.Env().Undefined();
}

Napi::Value sync(const Napi::CallbackInfo& info) {
  auto* w = new EventWorker(info.Env(), EventWorker::kSync, recordEvent(cudaEventDisableTiming, "sync (event)"));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// timerStart() → id; timerEnd(id) → Promise<ms between the two points on the stream>.
std::unordered_map<int64_t, cudaEvent_t> gTimers;
int64_t gNextTimer = 1;

Napi::Value timerStart(const Napi::CallbackInfo& info) {
  const int64_t id = gNextTimer++;
  gTimers[id] = recordEvent(cudaEventDefault, "time (start event)");
  return Napi::Number::New(info.Env(), static_cast<double>(id));
}

Napi::Value timerEnd(const Napi::CallbackInfo& info) {
  auto it = gTimers.find(intArg(info, 0));
  if (it == gTimers.end()) throw CudaError("timerEnd: unknown timer");
  cudaEvent_t start = it->second;
  gTimers.erase(it);
  auto* w = new EventWorker(info.Env(), EventWorker::kTimer, recordEvent(cudaEventDefault, "time (end event)"));
  w->setTimer(start);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// ---- kernels ----

Napi::Value unary(const Napi::CallbackInfo& info) {
  check(launchUnary(dev().stream(), int(intArg(info, 0)), int(intArg(info, 1)), ptrArg(info, 2),
                    ptrArg(info, 3), intArg(info, 4), float(numArg(info, 5)), float(numArg(info, 6))),
        "unary kernel launch");
  return info.Env().Undefined();
}

Napi::Value binary(const Napi::CallbackInfo& info) {
  check(launchBinary(dev().stream(), int(intArg(info, 0)), int(intArg(info, 1)), ptrArg(info, 2),
                     ptrArg(info, 3), ptrArg(info, 4), shapeArg(info, 5, 2)),
        "binary kernel launch");
  return info.Env().Undefined();
}

Napi::Value select(const Napi::CallbackInfo& info) {
  check(launchSelect(dev().stream(), int(intArg(info, 0)), static_cast<const uint8_t*>(ptrArg(info, 1)),
                     ptrArg(info, 2), ptrArg(info, 3), ptrArg(info, 4), intArg(info, 5)),
        "select kernel launch");
  return info.Env().Undefined();
}

Napi::Value cast(const Napi::CallbackInfo& info) {
  check(launchCast(dev().stream(), int(intArg(info, 0)), int(intArg(info, 1)), ptrArg(info, 2),
                   ptrArg(info, 3), intArg(info, 4)),
        "cast kernel launch");
  return info.Env().Undefined();
}

Napi::Value fill(const Napi::CallbackInfo& info) {
  check(launchFill(dev().stream(), int(intArg(info, 0)), ptrArg(info, 1), intArg(info, 2), numArg(info, 3)),
        "fill kernel launch");
  return info.Env().Undefined();
}

Napi::Value range(const Napi::CallbackInfo& info) {
  check(launchRange(dev().stream(), int(intArg(info, 0)), ptrArg(info, 1), intArg(info, 2),
                    numArg(info, 3), numArg(info, 4)),
        "range kernel launch");
  return info.Env().Undefined();
}

Napi::Value copy(const Napi::CallbackInfo& info) {
  check(launchStridedCopy(dev().stream(), int(intArg(info, 0)), ptrArg(info, 1), ptrArg(info, 2),
                          shapeArg(info, 3, 2)),
        "strided copy kernel launch");
  return info.Env().Undefined();
}

Napi::Value reduce(const Napi::CallbackInfo& info) {
  check(launchReduce(dev().stream(), int(intArg(info, 0)), int(intArg(info, 1)), ptrArg(info, 2),
                     ptrArg(info, 3), intArg(info, 4), intArg(info, 5)),
        "reduce kernel launch");
  return info.Env().Undefined();
}

Napi::Value gather(const Napi::CallbackInfo& info) {
  check(launchGather(dev().stream(), int(intArg(info, 0)), ptrArg(info, 1),
                     static_cast<const int32_t*>(ptrArg(info, 2)), ptrArg(info, 3), intArg(info, 4),
                     intArg(info, 5), intArg(info, 6), intArg(info, 7), intArg(info, 8)),
        "gather kernel launch");
  return info.Env().Undefined();
}

Napi::Value segmentSum(const Napi::CallbackInfo& info) {
  check(launchSegmentSum(dev().stream(), int(intArg(info, 0)), ptrArg(info, 1),
                         static_cast<const int32_t*>(ptrArg(info, 2)), ptrArg(info, 3), intArg(info, 4),
                         intArg(info, 5), intArg(info, 6)),
        "segment sum kernel launch");
  return info.Env().Undefined();
}

Napi::Value oneHot(const Napi::CallbackInfo& info) {
  check(launchOneHot(dev().stream(), int(intArg(info, 0)), static_cast<const int32_t*>(ptrArg(info, 1)),
                     ptrArg(info, 2), intArg(info, 3), intArg(info, 4), numArg(info, 5), numArg(info, 6)),
        "one-hot kernel launch");
  return info.Env().Undefined();
}

Napi::Value softmax(const Napi::CallbackInfo& info) {
  check(launchSoftmax(dev().stream(), static_cast<const float*>(ptrArg(info, 0)),
                      static_cast<float*>(ptrArg(info, 1)), intArg(info, 2), intArg(info, 3)),
        "softmax kernel launch");
  return info.Env().Undefined();
}

// toBf16(x, y, n): y (bf16) = x (float32) rounded to nearest even; a bf16 matmul's operand copy
Napi::Value toBf16(const Napi::CallbackInfo& info) {
  check(launchF32ToBf16(dev().stream(), static_cast<const float*>(ptrArg(info, 0)), ptrArg(info, 1), intArg(info, 2)),
        "float32→bf16 kernel launch");
  return info.Env().Undefined();
}

// fromBf16(x, y, n): y (float32) = x (bf16), exactly
Napi::Value fromBf16(const Napi::CallbackInfo& info) {
  check(launchBf16ToF32(dev().stream(), ptrArg(info, 0), static_cast<float*>(ptrArg(info, 1)), intArg(info, 2)),
        "bf16→float32 kernel launch");
  return info.Env().Undefined();
}

Napi::Value matmulBinding(const Napi::CallbackInfo& info) {
  matmul(dev(), ptrArg(info, 0), ptrArg(info, 1),
         static_cast<float*>(ptrArg(info, 2)), intArg(info, 3), intArg(info, 4), intArg(info, 5),
         intArg(info, 6), info[7].As<Napi::Boolean>().Value(), info[8].As<Napi::Boolean>().Value(),
         intArg(info, 9), intArg(info, 10), int(intArg(info, 11)));
  return info.Env().Undefined();
}

// matmulAdd(a, b, c, out, batch, m, n, k, transA, transB, precision, alpha, beta): out = alpha·op(A)·op(B) + beta·C
Napi::Value matmulAddBinding(const Napi::CallbackInfo& info) {
  const int64_t batch = intArg(info, 4), m = intArg(info, 5), n = intArg(info, 6), k = intArg(info, 7);
  matmul(dev(), ptrArg(info, 0), ptrArg(info, 1),
         static_cast<float*>(ptrArg(info, 3)), batch, m, n, k, info[8].As<Napi::Boolean>().Value(),
         info[9].As<Napi::Boolean>().Value(), m * k, k * n, int(intArg(info, 10)),
         static_cast<const float*>(ptrArg(info, 2)), float(numArg(info, 11)), float(numArg(info, 12)));
  return info.Env().Undefined();
}

Napi::Value rmsNorm(const Napi::CallbackInfo& info) {
  check(launchRmsNorm(dev().stream(), static_cast<const float*>(ptrArg(info, 0)),
                      static_cast<float*>(ptrArg(info, 1)), intArg(info, 2), intArg(info, 3),
                      float(numArg(info, 4))),
        "RMSNorm kernel launch");
  return info.Env().Undefined();
}

Napi::Value rmsNormGrad(const Napi::CallbackInfo& info) {
  check(launchRmsNormGrad(dev().stream(), static_cast<const float*>(ptrArg(info, 0)),
                          static_cast<const float*>(ptrArg(info, 1)), static_cast<float*>(ptrArg(info, 2)),
                          intArg(info, 3), intArg(info, 4), float(numArg(info, 5))),
        "RMSNorm gradient kernel launch");
  return info.Env().Undefined();
}

// attention(q, k, v, docIds, o, stats, B, T, H, Hk, h, window, scale, score, tensorCores); stats may be 0
Napi::Value attention(const Napi::CallbackInfo& info) {
  check(launchAttention(dev().stream(), static_cast<const float*>(ptrArg(info, 0)),
                        static_cast<const float*>(ptrArg(info, 1)), static_cast<const float*>(ptrArg(info, 2)),
                        static_cast<const int*>(ptrArg(info, 3)), static_cast<float*>(ptrArg(info, 4)),
                        static_cast<float*>(ptrArg(info, 5)), int(intArg(info, 6)), int(intArg(info, 7)),
                        int(intArg(info, 8)), int(intArg(info, 9)), int(intArg(info, 10)), int(intArg(info, 11)),
                        float(numArg(info, 12)), int(intArg(info, 13)), info[14].As<Napi::Boolean>().Value()),
        "CausalAttention kernel launch");
  return info.Env().Undefined();
}

// attentionGrad(q, k, v, docIds, o, dO, stats, statsReady, delta, dq, dk, dv, B, T, H, Hk, h, window, scale, score,
//               tensorCores); delta may be 0 (the exact kernels need none)
Napi::Value attentionGrad(const Napi::CallbackInfo& info) {
  check(launchAttentionGrad(dev().stream(), static_cast<const float*>(ptrArg(info, 0)),
                            static_cast<const float*>(ptrArg(info, 1)), static_cast<const float*>(ptrArg(info, 2)),
                            static_cast<const int*>(ptrArg(info, 3)), static_cast<const float*>(ptrArg(info, 4)),
                            static_cast<const float*>(ptrArg(info, 5)), static_cast<float*>(ptrArg(info, 6)),
                            info[7].As<Napi::Boolean>().Value(), static_cast<float*>(ptrArg(info, 8)),
                            static_cast<float*>(ptrArg(info, 9)), static_cast<float*>(ptrArg(info, 10)),
                            static_cast<float*>(ptrArg(info, 11)), int(intArg(info, 12)), int(intArg(info, 13)),
                            int(intArg(info, 14)), int(intArg(info, 15)), int(intArg(info, 16)), int(intArg(info, 17)),
                            float(numArg(info, 18)), int(intArg(info, 19)), info[20].As<Napi::Boolean>().Value()),
        "CausalAttention gradient kernel launch");
  return info.Env().Undefined();
}

// softcapCrossEntropy(logits, targets, rowStats, loss, rows, cols, cap, scale, temp, mean)
Napi::Value softcapCrossEntropy(const Napi::CallbackInfo& info) {
  check(launchSoftcapCrossEntropy(dev().stream(), static_cast<const float*>(ptrArg(info, 0)),
                                  static_cast<const int32_t*>(ptrArg(info, 1)), static_cast<float*>(ptrArg(info, 2)),
                                  static_cast<float*>(ptrArg(info, 3)), intArg(info, 4), intArg(info, 5),
                                  int(intArg(info, 6)), float(numArg(info, 7)), float(numArg(info, 8)),
                                  info[9].As<Napi::Boolean>().Value()),
        "SoftcapCrossEntropy kernel launch");
  return info.Env().Undefined();
}

// softcapCrossEntropyGrad(dy, logits, targets, rowStats, dlogits, dlogitsBf16, rows, cols, cap, scale, temp, mean)
Napi::Value softcapCrossEntropyGrad(const Napi::CallbackInfo& info) {
  check(launchSoftcapCrossEntropyGrad(dev().stream(), static_cast<const float*>(ptrArg(info, 0)),
                                      static_cast<const float*>(ptrArg(info, 1)), static_cast<const int32_t*>(ptrArg(info, 2)),
                                      static_cast<const float*>(ptrArg(info, 3)), ptrArg(info, 4), info[5].As<Napi::Boolean>().Value(),
                                      intArg(info, 6), intArg(info, 7), int(intArg(info, 8)), float(numArg(info, 9)),
                                      float(numArg(info, 10)), info[11].As<Napi::Boolean>().Value()),
        "SoftcapCrossEntropy gradient kernel launch");
  return info.Env().Undefined();
}

// rotary(x, cos, sin, y, B, T, H, half, inverse)
Napi::Value rotary(const Napi::CallbackInfo& info) {
  check(launchRotary(dev().stream(), static_cast<const float*>(ptrArg(info, 0)), static_cast<const float*>(ptrArg(info, 1)),
                     static_cast<const float*>(ptrArg(info, 2)), static_cast<float*>(ptrArg(info, 3)), intArg(info, 4),
                     intArg(info, 5), intArg(info, 6), intArg(info, 7), info[8].As<Napi::Boolean>().Value()),
        info[8].As<Napi::Boolean>().Value() ? "Rotary gradient kernel launch" : "Rotary kernel launch");
  return info.Env().Undefined();
}

// attentionInputs(qkv, cos, sin, lambdas, ve, q, k, v, B, T, H, Hk, h, qkNorm, eps); ve 0: none
Napi::Value attentionInputs(const Napi::CallbackInfo& info) {
  check(launchAttentionInputs(dev().stream(), floatArg(info, 0), floatArg(info, 1), floatArg(info, 2), floatArg(info, 3),
                              floatArg(info, 4), static_cast<float*>(ptrArg(info, 5)), static_cast<float*>(ptrArg(info, 6)),
                              static_cast<float*>(ptrArg(info, 7)), intArg(info, 8), intArg(info, 9), intArg(info, 10),
                              intArg(info, 11), intArg(info, 12), info[13].As<Napi::Boolean>().Value(), float(numArg(info, 14))),
        "AttentionInputs kernel launch");
  return info.Env().Undefined();
}

// attentionInputsGrad(dq, dk, dv, qkv, cos, sin, lambdas, ve, dqkv, dqkvBf16, dlambdas, dve, B, T, H, Hk, h, qkNorm, eps)
Napi::Value attentionInputsGrad(const Napi::CallbackInfo& info) {
  check(launchAttentionInputsGrad(dev().stream(), floatArg(info, 0), floatArg(info, 1), floatArg(info, 2), floatArg(info, 3),
                                  floatArg(info, 4), floatArg(info, 5), floatArg(info, 6), floatArg(info, 7),
                                  ptrArg(info, 8), info[9].As<Napi::Boolean>().Value(), static_cast<float*>(ptrArg(info, 10)),
                                  static_cast<float*>(ptrArg(info, 11)), intArg(info, 12), intArg(info, 13), intArg(info, 14),
                                  intArg(info, 15), intArg(info, 16), info[17].As<Napi::Boolean>().Value(),
                                  float(numArg(info, 18))),
        "AttentionInputs gradient kernel launch");
  return info.Env().Undefined();
}

// headGate(o, g, y, yBf16, rows, h)
Napi::Value headGate(const Napi::CallbackInfo& info) {
  check(launchHeadGate(dev().stream(), floatArg(info, 0), floatArg(info, 1), ptrArg(info, 2), info[3].As<Napi::Boolean>().Value(),
                       intArg(info, 4), intArg(info, 5)),
        "HeadGate kernel launch");
  return info.Env().Undefined();
}

// headGateGrad(dy, o, g, dO, dg, rows, h)
Napi::Value headGateGrad(const Napi::CallbackInfo& info) {
  check(launchHeadGateGrad(dev().stream(), floatArg(info, 0), floatArg(info, 1), floatArg(info, 2),
                           static_cast<float*>(ptrArg(info, 3)), static_cast<float*>(ptrArg(info, 4)), intArg(info, 5),
                           intArg(info, 6)),
        "HeadGate gradient kernel launch");
  return info.Env().Undefined();
}

// reluSquared(x, y, yBf16, n)
Napi::Value reluSquared(const Napi::CallbackInfo& info) {
  check(launchReluSquared(dev().stream(), static_cast<const float*>(ptrArg(info, 0)), ptrArg(info, 1),
                          info[2].As<Napi::Boolean>().Value(), intArg(info, 3)),
        "ReluSquared kernel launch");
  return info.Env().Undefined();
}

// reluSquaredGrad(dy, x, dx, dxBf16, n)
Napi::Value reluSquaredGrad(const Napi::CallbackInfo& info) {
  check(launchReluSquaredGrad(dev().stream(), static_cast<const float*>(ptrArg(info, 0)),
                              static_cast<const float*>(ptrArg(info, 1)), ptrArg(info, 2),
                              info[3].As<Napi::Boolean>().Value(), intArg(info, 4)),
        "ReluSquared gradient kernel launch");
  return info.Env().Undefined();
}

// scaledAdd(x, z, a, b, y, n)
Napi::Value scaledAdd(const Napi::CallbackInfo& info) {
  check(launchScaledAdd(dev().stream(), static_cast<const float*>(ptrArg(info, 0)), static_cast<const float*>(ptrArg(info, 1)),
                        static_cast<const float*>(ptrArg(info, 2)), static_cast<const float*>(ptrArg(info, 3)),
                        static_cast<float*>(ptrArg(info, 4)), intArg(info, 5)),
        "ScaledAdd kernel launch");
  return info.Env().Undefined();
}

// scaledAddGrad(dy, x, z, a, b, dx, dz, da, db, n)
Napi::Value scaledAddGrad(const Napi::CallbackInfo& info) {
  check(launchScaledAddGrad(dev().stream(), static_cast<const float*>(ptrArg(info, 0)),
                            static_cast<const float*>(ptrArg(info, 1)), static_cast<const float*>(ptrArg(info, 2)),
                            static_cast<const float*>(ptrArg(info, 3)), static_cast<const float*>(ptrArg(info, 4)),
                            static_cast<float*>(ptrArg(info, 5)), static_cast<float*>(ptrArg(info, 6)),
                            static_cast<float*>(ptrArg(info, 7)), static_cast<float*>(ptrArg(info, 8)), intArg(info, 9)),
        "ScaledAdd gradient kernel launch");
  return info.Env().Undefined();
}

// adamUpdate(p, m, v, g, pOut, mOut, vOut, n, beta1, beta2, bc1, bc2, eps, lr)
Napi::Value adamUpdate(const Napi::CallbackInfo& info) {
  const double beta1 = numArg(info, 8), beta2 = numArg(info, 9);
  const AdamHyper h{float(beta1), float(1 - beta1), float(beta2), float(1 - beta2),
                    float(numArg(info, 10)), float(numArg(info, 11)), float(numArg(info, 12)), float(numArg(info, 13))};
  check(launchAdamUpdate(dev().stream(), static_cast<const float*>(ptrArg(info, 0)), static_cast<const float*>(ptrArg(info, 1)),
                         static_cast<const float*>(ptrArg(info, 2)), static_cast<const float*>(ptrArg(info, 3)),
                         static_cast<float*>(ptrArg(info, 4)), static_cast<float*>(ptrArg(info, 5)),
                         static_cast<float*>(ptrArg(info, 6)), intArg(info, 7), h),
        "AdamUpdate kernel launch");
  return info.Env().Undefined();
}

// muonMomentum(buf, g, bufOut, nesterov, n, momentum)
Napi::Value muonMomentum(const Napi::CallbackInfo& info) {
  const double mu = numArg(info, 5);
  check(launchMuonMomentum(dev().stream(), static_cast<const float*>(ptrArg(info, 0)), static_cast<const float*>(ptrArg(info, 1)),
                           static_cast<float*>(ptrArg(info, 2)), static_cast<float*>(ptrArg(info, 3)), intArg(info, 4),
                           float(mu), float(1 - mu)),
        "MuonMomentum kernel launch");
  return info.Env().Undefined();
}

// ---- NCCL (collectives.cc) ----

Napi::Value ncclGetUniqueIdBinding(const Napi::CallbackInfo& info) {
  const std::string id = ncclNewUniqueId();
  return Napi::Buffer<char>::Copy(info.Env(), id.data(), id.size());
}

Napi::Value ncclInitBinding(const Napi::CallbackInfo& info) {
  const Napi::Buffer<char> id = info[0].As<Napi::Buffer<char>>();
  ncclOpen(dev(), std::string(id.Data(), id.Length()), int(intArg(info, 1)), int(intArg(info, 2)));
  return info.Env().Undefined();
}

// ncclAllReduce(inPtrs[], outPtrs[], counts[], average)
Napi::Value ncclAllReduceBinding(const Napi::CallbackInfo& info) {
  const Napi::Array ins = info[0].As<Napi::Array>(), outs = info[1].As<Napi::Array>(), counts = info[2].As<Napi::Array>();
  const uint32_t n = ins.Length();
  if (outs.Length() != n || counts.Length() != n) throw CudaError("ncclAllReduce: inputs, outputs and counts differ in length");
  std::vector<const float*> in(n);
  std::vector<float*> out(n);
  std::vector<int64_t> count(n);
  for (uint32_t i = 0; i < n; ++i) {
    in[i] = reinterpret_cast<const float*>(static_cast<uintptr_t>(ins.Get(i).As<Napi::Number>().Int64Value()));
    out[i] = reinterpret_cast<float*>(static_cast<uintptr_t>(outs.Get(i).As<Napi::Number>().Int64Value()));
    count[i] = counts.Get(i).As<Napi::Number>().Int64Value();
  }
  ncclAllReduceFloat32(dev(), in, out, count, info[3].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

Napi::Value ncclDestroyBinding(const Napi::CallbackInfo& info) {
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
      {"timerEnd", guarded<timerEnd>}, {"unary", guarded<unary>},
      {"binary", guarded<binary>},     {"select", guarded<select>},
      {"cast", guarded<cast>},         {"fill", guarded<fill>},
      {"range", guarded<range>},       {"copy", guarded<copy>},
      {"reduce", guarded<reduce>},     {"gather", guarded<gather>},
      {"segmentSum", guarded<segmentSum>}, {"oneHot", guarded<oneHot>},
      {"softmax", guarded<softmax>},   {"matmul", guarded<matmulBinding>},
      {"matmulAdd", guarded<matmulAddBinding>}, {"toBf16", guarded<toBf16>},
      {"fromBf16", guarded<fromBf16>},
      {"rmsNorm", guarded<rmsNorm>},   {"rmsNormGrad", guarded<rmsNormGrad>},
      {"attention", guarded<attention>}, {"attentionGrad", guarded<attentionGrad>},
      {"softcapCrossEntropy", guarded<softcapCrossEntropy>},
      {"softcapCrossEntropyGrad", guarded<softcapCrossEntropyGrad>},
      {"rotary", guarded<rotary>},
      {"attentionInputs", guarded<attentionInputs>}, {"attentionInputsGrad", guarded<attentionInputsGrad>},
      {"headGate", guarded<headGate>}, {"headGateGrad", guarded<headGateGrad>},
      {"reluSquared", guarded<reluSquared>}, {"reluSquaredGrad", guarded<reluSquaredGrad>},
      {"scaledAdd", guarded<scaledAdd>}, {"scaledAddGrad", guarded<scaledAddGrad>},
      {"adamUpdate", guarded<adamUpdate>}, {"muonMomentum", guarded<muonMomentum>},
      {"ncclGetUniqueId", guarded<ncclGetUniqueIdBinding>}, {"ncclInit", guarded<ncclInitBinding>},
      {"ncclAllReduce", guarded<ncclAllReduceBinding>},     {"ncclDestroy", guarded<ncclDestroyBinding>},
  };
  for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
  return exports;
}

}  // namespace
}  // namespace tsgpt

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return tsgpt::Init(env, exports); }
NODE_API_MODULE(tsgpt_cuda, InitAddon)
