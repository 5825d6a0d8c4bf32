// Loading libmpi (library.h): dlopen, the functions of MPI 3.0 it must have, the ABI's predefined handles, MPI_Init.

#include "library.h"

#include <dlfcn.h>
#include <malloc.h>

namespace mpi {

Mpi g_mpi;

namespace {

template <typename F>
bool sym(F& fn, const char* name, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(g_mpi.lib, name));
  if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
  return fn != nullptr;
}

}  // namespace

std::string mpiError(int code) {
  if (!g_mpi.errorString) return "MPI error " + std::to_string(code);
  char buf[1024];
  int len = 0;
  g_mpi.errorString(code, buf, &len);
  return std::string(buf, len > 0 ? len : 0);
}

std::string load_mpi(const std::vector<std::string>& names) {
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
    return "libmpi could not be loaded (" + tried + "); install Open MPI (e.g. apt-get install openmpi-bin) " +
           "or set GPT2_LIBMPI to the library's path";
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
  if (!missing.empty()) return g_mpi.libName + " lacks " + missing + " (MPI 3.0 or newer is needed)";
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
      return g_mpi.libName + ": Open MPI's predefined handles (ompi_mpi_float, ...) are missing";
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
    if (rc != 0) return "MPI_Init failed: " + mpiError(rc);
  }
  g_mpi.commRank(g_mpi.commWorld, &g_mpi.rank);
  g_mpi.commSize(g_mpi.commWorld, &g_mpi.size);
  g_mpi.ready = true;
  return "";
}

}  // namespace mpi
