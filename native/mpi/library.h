// libmpi, loaded at run time (dlopen): its functions, and the predefined handles of the ABI found. Two ABIs are
// handled: Open MPI (handles are addresses of global objects: dlsym("ompi_mpi_comm_world") ...) and MPICH and its
// derivatives (handles are fixed integers). Handles travel as uintptr_t: on x86-64 and arm64 an int argument is passed
// in the low half of the same register, so one set of function types serves both.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mpi {

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


extern Mpi g_mpi;

/**
 * Loads the first of `names` that opens, resolves its functions and handles, and initializes MPI (once; g_mpi.ready
 * after). Returns "" on success, else the reason in one line.
 */
std::string load_mpi(const std::vector<std::string>& names);

/** MPI's words for an error code */
std::string mpiError(int code);

}  // namespace mpi
