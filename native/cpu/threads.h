// Thread control: OpenMP with a process-wide thread count set from JS (GPT2_THREADS / --threads).
#pragma once
#include <omp.h>

inline int g_threads() { return omp_get_max_threads(); }
