// MPI for CPU buffers, loaded at run time: the addon dlopen()s libmpi only when a run asks for it, so installing
// and using gpt2ts needs no MPI. Every collective has a deadline, so a dead or diverging rank gives an error instead
// of a hang: blocking collectives (MPI's tuned algorithms, 2x faster than the non-blocking ones for large buffers
// here) run under a watchdog thread that ends the process with a one-line message when the deadline passes (the
// launcher then ends the other ranks); non-blocking all-reduces (overlapped with backward) are polled against it.
//
// Two ABIs are handled: Open MPI (handles are addresses of global objects: dlsym("ompi_mpi_comm_world") ...) and
// MPICH and its derivatives (handles are fixed integers). Handles travel as uintptr_t: on x86-64 and arm64 an int
// argument is passed in the low half of the same register, so one set of function types serves both.

#include <dlfcn.h>
#include <malloc.h>
#include <node_api.h>

#include "../common/napi_util.h"
#include "../common/watchdog.h"

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Handle = uintptr_t;
typedef int (*InitFn)(int*, char***);
typedef int (*InitializedFn)(int*);
typedef int (*CommIntFn)(Handle, int*);
typedef int (*IallreduceFn)(const void*, void*, int, Handle, Handle, Handle, void*);
typedef int (*TestFn)(void*, int*, void*);
typedef int (*AllreduceFn)(const void*, void*, int, Handle, Handle, Handle);
typedef int (*ReduceScatterFn)(const void*, void*, const int*, Handle, Handle, Handle);
typedef int (*AllgathervFn)(const void*, int, Handle, void*, const int*, const int*, Handle, Handle);
typedef int (*BcastFn)(void*, int, Handle, int, Handle);
typedef int (*BarrierFn)(Handle);
typedef int (*AbortFn)(Handle, int);
typedef int (*FinalizeFn)();
typedef int (*ErrorStringFn)(int, char*, int*);

struct Mpi {
  void* lib = nullptr;
  std::string libName;
  bool openmpi = false;
  InitFn init = nullptr;
  InitializedFn initialized = nullptr;
  CommIntFn commRank = nullptr, commSize = nullptr;
  IallreduceFn iallreduce = nullptr;
  TestFn test = nullptr;
  AllreduceFn allreduce = nullptr;
  ReduceScatterFn reduceScatter = nullptr;
  AllgathervFn allgatherv = nullptr;
  BcastFn bcast = nullptr;
  BarrierFn barrier = nullptr;
  AbortFn abort = nullptr;
  FinalizeFn finalize = nullptr;
  ErrorStringFn errorString = nullptr;
  Handle commWorld = 0, tFloat = 0, tDouble = 0, tByte = 0, opSum = 0;
  void* inPlace = nullptr;
  void* statusIgnore = nullptr;
  int rank = 0, size = 1;
  bool ready = false;
};

Mpi g_mpi;



/** outstanding non-blocking operations; a request id indexes here */
struct Request {
  uint64_t handle[2] = {0, 0};  // MPI_Request: a pointer (Open MPI) or an int (MPICH)
  bool active = false;
  std::string what;
};
std::vector<Request> g_requests;

void throwError(napi_env env, const std::string& msg) { napi_throw_error(env, nullptr, msg.c_str()); }

std::string mpiError(int code) {
  if (!g_mpi.errorString) return "MPI error " + std::to_string(code);
  char buf[1024];
  int len = 0;
  g_mpi.errorString(code, buf, &len);
  return std::string(buf, len > 0 ? len : 0);
}

template <typename F>
bool sym(F& fn, const char* name, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(g_mpi.lib, name));
  if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
  return fn != nullptr;
}

// mpiInit(libPath?: string) -> { rank, size, lib, abi }
napi_value MpiInit(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (!g_mpi.ready) {
    std::vector<std::string> names;
    if (argc >= 1) {
      napi_valuetype t;
      napi_typeof(env, argv[0], &t);
      if (t == napi_string) {
        char buf[4096];
        size_t len = 0;
        napi_get_value_string_utf8(env, argv[0], buf, sizeof buf, &len);
        if (len) names.emplace_back(buf, len);
      }
    }
    if (names.empty()) names = {"libmpi.so.40", "libmpi.so.12", "libmpi.so"};
    std::string tried;
    for (const auto& n : names) {
      // RTLD_GLOBAL: Open MPI's own plugins resolve libmpi's symbols through the global namespace
      g_mpi.lib = dlopen(n.c_str(), RTLD_NOW | RTLD_GLOBAL);
      if (g_mpi.lib) {
        g_mpi.libName = n;
        break;
      }
      const char* err = dlerror();
      tried += (tried.empty() ? "" : "; ") + std::string(err ? err : n.c_str());
    }
    if (!g_mpi.lib) {
      throwError(env, "libmpi could not be loaded (" + tried + "); install Open MPI (e.g. apt-get install openmpi-bin) " +
                          "or set GPT2_LIBMPI to the library's path");
      return nullptr;
    }
    std::string missing;
    sym(g_mpi.init, "MPI_Init", missing);
    sym(g_mpi.initialized, "MPI_Initialized", missing);
    sym(g_mpi.commRank, "MPI_Comm_rank", missing);
    sym(g_mpi.commSize, "MPI_Comm_size", missing);
    sym(g_mpi.iallreduce, "MPI_Iallreduce", missing);
    sym(g_mpi.test, "MPI_Test", missing);
    sym(g_mpi.allreduce, "MPI_Allreduce", missing);
    sym(g_mpi.reduceScatter, "MPI_Reduce_scatter", missing);
    sym(g_mpi.allgatherv, "MPI_Allgatherv", missing);
    sym(g_mpi.bcast, "MPI_Bcast", missing);
    sym(g_mpi.barrier, "MPI_Barrier", missing);
    sym(g_mpi.abort, "MPI_Abort", missing);
    sym(g_mpi.finalize, "MPI_Finalize", missing);
    sym(g_mpi.errorString, "MPI_Error_string", missing);
    if (!missing.empty()) {
      throwError(env, g_mpi.libName + " lacks " + missing + " (MPI 3.0 or newer is needed)");
      return nullptr;
    }
    void* world = dlsym(g_mpi.lib, "ompi_mpi_comm_world");
    if (world) {  // Open MPI
      g_mpi.openmpi = true;
      g_mpi.commWorld = reinterpret_cast<Handle>(world);
      g_mpi.tFloat = reinterpret_cast<Handle>(dlsym(g_mpi.lib, "ompi_mpi_float"));
      g_mpi.tDouble = reinterpret_cast<Handle>(dlsym(g_mpi.lib, "ompi_mpi_double"));
      g_mpi.tByte = reinterpret_cast<Handle>(dlsym(g_mpi.lib, "ompi_mpi_byte"));
      g_mpi.opSum = reinterpret_cast<Handle>(dlsym(g_mpi.lib, "ompi_mpi_op_sum"));
      g_mpi.inPlace = reinterpret_cast<void*>(1);
      g_mpi.statusIgnore = nullptr;
      if (!g_mpi.tFloat || !g_mpi.tDouble || !g_mpi.tByte || !g_mpi.opSum) {
        throwError(env, g_mpi.libName + ": Open MPI's predefined handles (ompi_mpi_float, ...) are missing");
        return nullptr;
      }
    } else {  // the MPICH ABI (MPICH, Intel MPI, MVAPICH, Cray MPICH)
      g_mpi.commWorld = 0x44000000;
      g_mpi.tFloat = 0x4c00040a;
      g_mpi.tDouble = 0x4c00080b;
      g_mpi.tByte = 0x4c00010d;
      g_mpi.opSum = 0x58000003;
      g_mpi.inPlace = reinterpret_cast<void*>(-1);
      g_mpi.statusIgnore = reinterpret_cast<void*>(1);
    }
    // MPI's collectives allocate (and free) temporary buffers the size of the message; above glibc's mmap
    // threshold (32 MiB at most) every call maps fresh pages and faults them in again, which made a 64 MiB
    // all-reduce 20x slower than a 16 MiB one here. Keep such buffers in the heap for reuse instead.
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    int already = 0;
    g_mpi.initialized(&already);
    if (!already) {
      int rc = g_mpi.init(nullptr, nullptr);
      if (rc != 0) {
        throwError(env, "MPI_Init failed: " + mpiError(rc));
        return nullptr;
      }
    }
    g_mpi.commRank(g_mpi.commWorld, &g_mpi.rank);
    g_mpi.commSize(g_mpi.commWorld, &g_mpi.size);
    g_mpi.ready = true;
  }
  napi_value r;
  napi_create_object(env, &r);
  napi_set_named_property(env, r, "rank", number_value(env, g_mpi.rank));
  napi_set_named_property(env, r, "size", number_value(env, g_mpi.size));
  napi_value s;
  napi_create_string_utf8(env, g_mpi.libName.c_str(), g_mpi.libName.size(), &s);
  napi_set_named_property(env, r, "lib", s);
  const char* abi = g_mpi.openmpi ? "openmpi" : "mpich";
  napi_create_string_utf8(env, abi, strlen(abi), &s);
  napi_set_named_property(env, r, "abi", s);
  return r;
}

struct Buffer {
  void* data = nullptr;
  size_t count = 0;  // elements
  Handle type = 0;
  size_t elemBytes = 0;
};

bool typedArray(napi_env env, napi_value v, Buffer& b) {
  bool is = false;
  napi_is_typedarray(env, v, &is);
  if (!is) return false;
  napi_typedarray_type type;
  napi_get_typedarray_info(env, v, &type, &b.count, &b.data, nullptr, nullptr);
  if (type == napi_float32_array) b.type = g_mpi.tFloat, b.elemBytes = 4;
  else if (type == napi_float64_array) b.type = g_mpi.tDouble, b.elemBytes = 8;
  else if (type == napi_uint8_array) b.type = g_mpi.tByte, b.elemBytes = 1;
  else return false;
  return true;
}

int newRequest(const std::string& what) {
  for (size_t i = 0; i < g_requests.size(); i++) {
    if (!g_requests[i].active) {
      g_requests[i] = Request();
      g_requests[i].active = true;
      g_requests[i].what = what;
      return (int)i;
    }
  }
  g_requests.emplace_back();
  g_requests.back().active = true;
  g_requests.back().what = what;
  return (int)g_requests.size() - 1;
}

void finishRequest(Request& r) { r.active = false; }

/** The per-rank counts (Int32Array) of a reduce-scatter / all-gather, with displacements; false after a throw. */
bool rankCounts(napi_env env, napi_value v, const Buffer& b, const std::string& op, std::vector<int>& counts,
                std::vector<int>& displs) {
  bool is = false;
  napi_is_typedarray(env, v, &is);
  napi_typedarray_type ct = napi_int8_array;
  size_t n = 0;
  void* data = nullptr;
  if (is) napi_get_typedarray_info(env, v, &ct, &n, &data, nullptr, nullptr);
  if (!is || ct != napi_int32_array || (int)n != g_mpi.size) {
    throwError(env, op + " needs an Int32Array of " + std::to_string(g_mpi.size) + " counts");
    return false;
  }
  const int* c = static_cast<const int*>(data);
  counts.assign(c, c + g_mpi.size);
  displs.resize(g_mpi.size);
  size_t total = 0;
  for (int i = 0; i < g_mpi.size; i++) displs[i] = (int)total, total += (size_t)c[i];
  if (total > b.count) {
    throwError(env, op + " counts add up to " + std::to_string(total) + ", the buffer holds " + std::to_string(b.count));
    return false;
  }
  return true;
}

// mpiRun(op, array|null, arg, timeoutSeconds) -> seconds it took. Blocking, under the watchdog. op: "allreduce"
// (sum, in place), "bcast" (arg: root), "barrier", "reducescatter" / "allgather" (arg: Int32Array of per-rank
// counts; this rank's part lives at its offset in the array, as in the flat parameter buffer).
napi_value MpiRun(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (!g_mpi.ready) return throwError(env, "MPI is not initialized"), nullptr;
  char opBuf[32];
  size_t opLen = 0;
  if (napi_get_value_string_utf8(env, argv[0], opBuf, sizeof opBuf, &opLen) != napi_ok)
    return throwError(env, "mpiRun: op must be a string"), nullptr;
  std::string op(opBuf, opLen);
  double timeout = 600;
  napi_get_value_double(env, argv[3], &timeout);
  Buffer b;
  if (op != "barrier" && !typedArray(env, argv[1], b))
    return throwError(env, "mpiRun: the buffer must be a Float32Array, Float64Array or Uint8Array"), nullptr;
  if (b.count > (size_t)INT32_MAX) return throwError(env, "mpiRun: more than 2^31-1 elements in one collective"), nullptr;
  std::vector<int> counts, displs;
  if ((op == "reducescatter" || op == "allgather") && !rankCounts(env, argv[2], b, op, counts, displs)) return nullptr;
  if (op == "reducescatter" && b.elemBytes != 4) return throwError(env, "mpiRun: reducescatter takes a Float32Array"), nullptr;
  auto t0 = std::chrono::steady_clock::now();
  g_watchdog.arm(g_mpi.rank,
                 std::string("MPI ") + (op == "reducescatter" ? "reduce-scatter" : op == "allgather" ? "all-gather" : op == "allreduce" ? "all-reduce" : op),
                 timeout);
  int rc = 0;
  if (op == "allreduce") {
    rc = g_mpi.allreduce(g_mpi.inPlace, b.data, (int)b.count, b.type, g_mpi.opSum, g_mpi.commWorld);
  } else if (op == "bcast") {
    double root = 0;
    napi_get_value_double(env, argv[2], &root);
    rc = g_mpi.bcast(b.data, (int)b.count, b.type, (int)root, g_mpi.commWorld);
  } else if (op == "barrier") {
    rc = g_mpi.barrier(g_mpi.commWorld);
  } else if (op == "reducescatter") {
    // in place: input from the whole buffer, this rank's sum lands at the front; moved to its offset afterwards
    rc = g_mpi.reduceScatter(g_mpi.inPlace, b.data, counts.data(), b.type, g_mpi.opSum, g_mpi.commWorld);
    float* f = static_cast<float*>(b.data);
    if (rc == 0 && displs[g_mpi.rank] > 0) memmove(f + displs[g_mpi.rank], f, (size_t)counts[g_mpi.rank] * sizeof(float));
  } else if (op == "allgather") {
    rc = g_mpi.allgatherv(g_mpi.inPlace, 0, b.type, b.data, counts.data(), displs.data(), b.type, g_mpi.commWorld);
  } else {
    g_watchdog.disarm();
    return throwError(env, "mpiRun: unknown op " + op), nullptr;
  }
  g_watchdog.disarm();
  if (rc != 0) return throwError(env, "MPI " + op + " failed: " + mpiError(rc)), nullptr;
  return number_value(env, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

// mpiStart(array) -> request id of a non-blocking in-place all-reduce (sum), finished by mpiTest / mpiWait
napi_value MpiStart(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (!g_mpi.ready) return throwError(env, "MPI is not initialized"), nullptr;
  Buffer b;
  if (!typedArray(env, argv[0], b)) return throwError(env, "mpiStart: the buffer must be a Float32Array or Float64Array"), nullptr;
  if (b.count > (size_t)INT32_MAX) return throwError(env, "mpiStart: more than 2^31-1 elements in one collective"), nullptr;
  int id = newRequest("all-reduce");
  Request& r = g_requests[id];
  int rc = g_mpi.iallreduce(g_mpi.inPlace, b.data, (int)b.count, b.type, g_mpi.opSum, g_mpi.commWorld, r.handle);
  if (rc != 0) {
    r.active = false;
    return throwError(env, "MPI all-reduce failed to start: " + mpiError(rc)), nullptr;
  }
  return number_value(env, id);
}

bool testOne(napi_env env, int id, bool& done) {
  Request& r = g_requests[id];
  if (!r.active) return done = true, true;
  int flag = 0;
  int rc = g_mpi.test(r.handle, &flag, g_mpi.statusIgnore);
  if (rc != 0) {
    r.active = false;
    throwError(env, "MPI " + r.what + " failed: " + mpiError(rc));
    return false;
  }
  done = flag != 0;
  if (done) finishRequest(r);
  return true;
}

int requestId(napi_env env, napi_value v) {
  double d = -1;
  napi_get_value_double(env, v, &d);
  int id = (int)d;
  return id >= 0 && id < (int)g_requests.size() ? id : -1;
}

// mpiTest(id) -> true when finished (drives progress; never blocks)
napi_value MpiTest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int id = requestId(env, argv[0]);
  if (id < 0) return throwError(env, "mpiTest: no such request"), nullptr;
  bool done = false;
  if (!testOne(env, id, done)) return nullptr;
  napi_value r;
  napi_get_boolean(env, done, &r);
  return r;
}

// mpiWait(id, timeoutSeconds) -> seconds waited; throws "timeout: ..." when the deadline passes
napi_value MpiWait(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int id = requestId(env, argv[0]);
  if (id < 0) return throwError(env, "mpiWait: no such request"), nullptr;
  double timeout = 0;
  napi_get_value_double(env, argv[1], &timeout);
  auto t0 = std::chrono::steady_clock::now();
  for (long spin = 0;; spin++) {
    bool done = false;
    if (!testOne(env, id, done)) return nullptr;
    if (done) break;
    // MPI's non-blocking collectives advance only inside MPI calls: poll without pause while the operation is
    // young (a pause there multiplies the time of a many-round algorithm); after a second the peer is just slow,
    // so back off to spare the core it may need, and watch the deadline
    if ((spin & 1023) == 0) {
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (waited > timeout) {
        std::string what = g_requests[id].what;
        char secs[32];
        snprintf(secs, sizeof secs, "%g", timeout);
        return throwError(env, "timeout: MPI " + what + " did not complete within " + secs + " s"), nullptr;
      }
      if (waited > 1.0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  return number_value(env, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

napi_value MpiAbort(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  double code = 1;
  if (argc >= 1) napi_get_value_double(env, argv[0], &code);
  if (g_mpi.ready) g_mpi.abort(g_mpi.commWorld, (int)code);
  return undefined_value(env);
}

napi_value MpiFinalize(napi_env env, napi_callback_info) {
  if (g_mpi.ready) {
    g_mpi.finalize();
    g_mpi.ready = false;
  }
  return undefined_value(env);
}

}  // namespace

void register_mpi(napi_env env, napi_value exports) {
  export_functions(env, exports, {{"mpiInit", MpiInit}, {"mpiRun", MpiRun},     {"mpiStart", MpiStart},      {"mpiTest", MpiTest},
             {"mpiWait", MpiWait}, {"mpiAbort", MpiAbort}, {"mpiFinalize", MpiFinalize}});
}
