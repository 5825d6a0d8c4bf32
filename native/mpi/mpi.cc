// MPI for CPU buffers, loaded at run time: the addon dlopen()s libmpi only when a run asks for it, so installing
// and using gpt2ts needs no MPI. Every collective has a deadline, so a dead or diverging rank gives an error instead
// of a hang: blocking collectives (MPI's tuned algorithms, 2x faster than the non-blocking ones for large buffers
// here) run under a watchdog thread that ends the process with a one-line message when the deadline passes (the
// launcher then ends the other ranks); non-blocking all-reduces (overlapped with backward) are polled against it.
// Loading the library, for either ABI (Open MPI's, MPICH's), is library.cc's.

#include <node_api.h>

#include "../common/napi_util.h"
#include "../common/watchdog.h"
#include "library.h"

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using mpi::g_mpi;
using mpi::Handle;
using mpi::mpiError;

/** outstanding non-blocking operations; a request id indexes here */
struct Request {
  uint64_t handle[2] = {0, 0};  // MPI_Request: a pointer (Open MPI) or an int (MPICH)
  bool active = false;
  std::string what;
};
std::vector<Request> g_requests;

void throwError(napi_env env, const std::string& msg) { napi_throw_error(env, nullptr, msg.c_str()); }

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
    std::string error = mpi::load_mpi(names);
    if (!error.empty()) {
      throwError(env, error);
      return nullptr;
    }
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
