// NCCL for GPU buffers, loaded at run time like the rest of the CUDA backend. Collectives run on a stream of their
// own, ordered after the work already queued on the compute stream by an event, and are waited for by polling, so
// that every wait has a deadline: past it (a rank died or hangs) the communicator is aborted and the caller gets an
// error instead of a hang. ncclCommInitRank, which cannot be polled, runs under the same watchdog as MPI's blocking
// collectives.

#include <node_api.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "../common/napi_util.h"
#include "../common/watchdog.h"
#include "cuda_napi.h"
#include "cuda_state.h"

using namespace gpt2cuda;

namespace {

struct Nccl {
  void* lib = nullptr;
  ncclResult_t (*getVersion)(int*);
  ncclResult_t (*getUniqueId)(ncclUniqueId*);
  ncclResult_t (*commInitRank)(ncclComm_t*, int, ncclUniqueId, int);
  ncclResult_t (*allReduce)(const void*, void*, size_t, int, int, ncclComm_t, CUstream);
  ncclResult_t (*reduceScatter)(const void*, void*, size_t, int, int, ncclComm_t, CUstream);
  ncclResult_t (*allGather)(const void*, void*, size_t, int, ncclComm_t, CUstream);
  ncclResult_t (*broadcast)(const void*, void*, size_t, int, int, ncclComm_t, CUstream);
  ncclResult_t (*commGetAsyncError)(ncclComm_t, ncclResult_t*);
  ncclResult_t (*commAbort)(ncclComm_t);
  ncclResult_t (*commDestroy)(ncclComm_t);
  const char* (*getErrorString)(ncclResult_t);
} g_nccl;

struct State {
  ncclComm_t comm = nullptr;
  int rank = 0, size = 1;
  CUstream stream = nullptr;
  CUevent ready = nullptr;  // recorded on the compute stream: what the collective must wait for
  CUevent done = nullptr;   // recorded on NCCL's stream after each collective
} g_state;

void load_nccl() {
  if (g_nccl.lib) return;
  std::string tried;
  void* lib = open_cuda_library({"libnccl.so.2", "libnccl.so"}, tried);
  if (!lib)
    throw CudaError("NCCL not found (tried " + tried +
                    "): install NCCL (libnccl2) or point GPT2_CUDA_LIBDIR at the folder holding libnccl.so.2");
  Nccl& n = g_nccl;
  bool ok = load_symbol(lib, "ncclGetVersion", n.getVersion) && load_symbol(lib, "ncclGetUniqueId", n.getUniqueId) &&
            load_symbol(lib, "ncclCommInitRank", n.commInitRank) && load_symbol(lib, "ncclAllReduce", n.allReduce) &&
            load_symbol(lib, "ncclReduceScatter", n.reduceScatter) && load_symbol(lib, "ncclAllGather", n.allGather) &&
            load_symbol(lib, "ncclBroadcast", n.broadcast) &&
            load_symbol(lib, "ncclCommGetAsyncError", n.commGetAsyncError) &&
            load_symbol(lib, "ncclCommAbort", n.commAbort) && load_symbol(lib, "ncclCommDestroy", n.commDestroy) &&
            load_symbol(lib, "ncclGetErrorString", n.getErrorString);
  if (!ok) throw CudaError("libnccl lacks a function this backend needs (NCCL 2.7 or newer is needed)");
  g_nccl.lib = lib;
}

void nccl_check(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess) throw CudaError("NCCL " + what + ": " + g_nccl.getErrorString(r));
}

/** Waits for the last collective with a deadline; on error or timeout aborts the communicator and throws. */
double wait_done(const std::string& what, double timeout) {
  auto t0 = std::chrono::steady_clock::now();
  for (int spins = 0;; spins++) {
    CUresult r = g_cu.eventQuery(g_state.done);
    if (r == 0) break;
    if (r != CUDA_ERROR_NOT_READY) check(r, what.c_str());
    ncclResult_t async = ncclSuccess;
    g_nccl.commGetAsyncError(g_state.comm, &async);
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if ((async != ncclSuccess && async != ncclInProgress) || waited > timeout) {
      g_nccl.commAbort(g_state.comm);
      g_state.comm = nullptr;
      if (async != ncclSuccess && async != ncclInProgress)
        throw CudaError("NCCL " + what + " failed: " + g_nccl.getErrorString(async) + " (another rank died?)");
      throw CudaError("timeout: NCCL " + what + " did not complete within " + std::to_string((int)timeout) + " s");
    }
    if (spins > 100) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/** ncclUniqueIdNew() -> a Uint8Array of 128 bytes (rank 0 makes it; the others get it through a bootstrap) */
EXPORT(NcclUniqueIdNew) {
  load_nccl();
  ncclUniqueId id;
  nccl_check(g_nccl.getUniqueId(&id), "get unique id");
  void* data;
  napi_value ab, out;
  napi_create_arraybuffer(env, sizeof id, &data, &ab);
  std::memcpy(data, &id, sizeof id);
  napi_create_typedarray(env, napi_uint8_array, sizeof id, ab, 0, &out);
  return out;
}

/** ncclInit(id, size, rank, timeoutSeconds) -> NCCL's version; the CUDA backend must be initialized first */
EXPORT(NcclInit) {
  if (!cuda_ready()) throw CudaError("NCCL needs the CUDA backend initialized first");
  load_nccl();
  size_t n;
  void* idBytes = a.bytes(0, n);
  if (n != sizeof(ncclUniqueId)) throw CudaError("an NCCL unique id is a Uint8Array of 128 bytes");
  ncclUniqueId id;
  std::memcpy(&id, idBytes, sizeof id);
  int size = (int)a.num(1), rank = (int)a.num(2);
  double timeout = a.num(3);
  check(g_cu.streamCreate(&g_state.stream, CU_STREAM_NON_BLOCKING), "stream");
  check(g_cu.eventCreate(&g_state.ready, CU_EVENT_DISABLE_TIMING), "event");
  check(g_cu.eventCreate(&g_state.done, CU_EVENT_DISABLE_TIMING), "event");
  g_watchdog.arm(rank, "NCCL set-up (ncclCommInitRank)", timeout);
  ncclResult_t r = g_nccl.commInitRank(&g_state.comm, size, id, rank);
  g_watchdog.disarm();
  nccl_check(r, "set-up");
  g_state.rank = rank;
  g_state.size = size;
  int version = 0;
  g_nccl.getVersion(&version);
  return number_value(env, version);
}

/**
 * ncclStart(op, ptr, count, dtype, root) queues a collective after the work already on the compute stream:
 * op "allreduce" (sum, in place), "reducescatter" (sum; ptr holds size*count, rank r's part lands at r*count),
 * "allgather" (in place, count per rank), "bcast" (from root). dtype: 7 float32, 8 float64, 1 uint8.
 */
EXPORT(NcclStart) {
  if (!g_state.comm) throw CudaError("NCCL is not initialized (or was aborted after an error)");
  std::string op = a.str(0);
  CUdeviceptr p = (CUdeviceptr)a.num(1);
  size_t count = (size_t)a.num(2);
  int dtype = (int)a.num(3), root = (int)a.num(4);
  size_t elem = dtype == ncclFloat64 ? 8 : dtype == ncclUint8 ? 1 : 4;
  check(g_cu.eventRecord(g_state.ready, nullptr), "event");
  check(g_cu.streamWaitEvent(g_state.stream, g_state.ready, 0), "stream wait");
  void* buf = (void*)p;
  void* part = (void*)(p + (CUdeviceptr)g_state.rank * count * elem);
  ncclResult_t r;
  if (op == "allreduce") r = g_nccl.allReduce(buf, buf, count, dtype, ncclSum, g_state.comm, g_state.stream);
  else if (op == "reducescatter") r = g_nccl.reduceScatter(buf, part, count, dtype, ncclSum, g_state.comm, g_state.stream);
  else if (op == "allgather") r = g_nccl.allGather(part, buf, count, dtype, g_state.comm, g_state.stream);
  else if (op == "bcast") r = g_nccl.broadcast(buf, buf, count, dtype, root, g_state.comm, g_state.stream);
  else throw CudaError("unknown NCCL collective " + op);
  nccl_check(r, op);
  check(g_cu.eventRecord(g_state.done, g_state.stream), "event");
  return undefined_value(env);
}

/** ncclTest() -> whether the last queued collective has completed (never blocks) */
EXPORT(NcclTest) {
  CUresult r = g_cu.eventQuery(g_state.done);
  if (r != 0 && r != CUDA_ERROR_NOT_READY) check(r, "NCCL test");
  napi_value b;
  napi_get_boolean(env, r == 0, &b);
  return b;
}

/**
 * ncclWait(what, timeoutSeconds) -> seconds waited: blocks until the last collective is done, then orders the
 * compute stream after it. Throws "timeout: ..." past the deadline (the communicator is aborted).
 */
EXPORT(NcclWait) {
  if (!g_state.comm) throw CudaError("NCCL is not initialized (or was aborted after an error)");
  double waited = wait_done(a.str(0), a.num(1));
  check(g_cu.streamWaitEvent(nullptr, g_state.done, 0), "stream wait");
  return number_value(env, waited);
}

/** ncclStaging(bytes) -> a device buffer for host data that goes through NCCL */
EXPORT(NcclStaging) { return number_value(env, (double)cuda_scratch((size_t)a.num(0))); }

EXPORT(NcclAbort) {
  if (g_state.comm) g_nccl.commAbort(g_state.comm);
  g_state.comm = nullptr;
  return undefined_value(env);
}

EXPORT(NcclDestroy) {
  if (g_state.comm) g_nccl.commDestroy(g_state.comm);
  g_state.comm = nullptr;
  return undefined_value(env);
}

}  // namespace

void register_nccl(napi_env env, napi_value exports) {
  export_functions(env, exports, {
      {"ncclUniqueIdNew", NcclUniqueIdNew}, {"ncclInit", NcclInit}, {"ncclStart", NcclStart},
      {"ncclTest", NcclTest}, {"ncclWait", NcclWait}, {"ncclStaging", NcclStaging},
      {"ncclAbort", NcclAbort}, {"ncclDestroy", NcclDestroy},
  });
}
