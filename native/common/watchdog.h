// A deadline for blocking calls that cannot be cancelled (MPI collectives, NCCL set-up): past it, the process prints one line
// and exits, and the launcher ends the other ranks.
#pragma once

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

/** Ends the process when a blocking collective outlives its deadline (MPI offers no way to cancel one). */
class Watchdog {
 public:
  /** `rank` names this process in the message, `what` the call ("MPI all-reduce") */
  void arm(int rank, const std::string& what, double seconds) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!started_) {
      std::thread([this] { run(); }).detach();
      started_ = true;
    }
    rank_ = rank;
    what_ = what;
    seconds_ = seconds;
    deadline_ = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                       std::chrono::duration<double>(seconds));
    armed_ = true;
    cv_.notify_all();
  }
  void disarm() {
    std::unique_lock<std::mutex> lock(mu_);
    armed_ = false;
    cv_.notify_all();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (!armed_) {
        cv_.wait(lock);
        continue;
      }
      if (cv_.wait_until(lock, deadline_) == std::cv_status::timeout && armed_ &&
          std::chrono::steady_clock::now() >= deadline_) {
        fprintf(stderr,
                "gpt2: rank %d: %s did not complete within %g s (GPT2_COMM_TIMEOUT): another rank died, hangs, "
                "or runs different flags\n",
                rank_, what_.c_str(), seconds_);
        fflush(stderr);
        _exit(1);
      }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool armed_ = false;
  int rank_ = 0;
  std::string what_;
  double seconds_ = 0;
  std::chrono::steady_clock::time_point deadline_;
};
// never destroyed: its thread waits on the condition variable for the life of the process, and destroying a
// condition variable with a waiter blocks exit()
inline Watchdog& g_watchdog = *new Watchdog();
