// Communicator: what tensor parallelism needs from the ranks of one job.
//
// world() is the single-process communicator (rank 0 of 1, every call a no-op)
// unless the process was started by mpirun (or another MPI launcher), in which
// case init() made it the MPI one. Tensor parallelism of 1 therefore runs
// today's code path with no MPI call at all.
//
// On one host, --tp-size N in a process that is not in an MPI world runs the same
// command line under `mpirun -np N` (relaunch_under_mpirun): mpirun supervises the
// ranks, so a rank that dies ends the whole job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace quanta::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // data[0, n) = the sum of every rank's data[0, n), on every rank.
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  // data[0, n) = the largest of every rank's data[0, n), on every rank.
  virtual void all_reduce_max(float* data, int64_t n) = 0;
  // root's bytes [data, data + n_bytes) copied to every rank.
  virtual void broadcast(void* data, size_t n_bytes, int root = 0) = 0;
  // As broadcast, but a waiting rank sleeps between polls instead of spinning: what
  // follower ranks use to wait for the next step (a server may stay idle for hours).
  // A nonblocking collective never matches a blocking one, so the root calls this too.
  virtual void broadcast_idle(void* data, size_t n_bytes, int root = 0) { broadcast(data, n_bytes, root); }
  // root gets every rank's send[0, n) in rank order in recv[0, size * n) (recv unused elsewhere).
  virtual void gather(const float* send, int64_t n, float* recv, int root = 0) = 0;

  // Seconds spent in all_reduce_sum and the calls made, for benchmarks.
  double reduce_seconds = 0;
  int64_t reduce_calls = 0;
};

// The communicator of this process (single-process unless init() found an MPI world).
Communicator& world();
// Whether the environment says this process was started by an MPI launcher.
bool launched_by_mpi();
// Joins the MPI world when launched_by_mpi(); otherwise does nothing. Called once by main.
void init(int argc, char** argv);
// Ends every rank of the job (MPI_Abort) with this exit code: how a rank that fails leaves.
// MPI_Finalize would wait for ranks still waiting for it. Exits plainly in one process.
[[noreturn]] void abort_job(int code);
// Remembers the command line, for relaunch_under_mpirun.
void set_command_line(int argc, char** argv);
// Runs the same command line under `mpirun -np n` and exits with its status (never
// returns); this process stays to pass SIGTERM/SIGINT to rank 0 (a server drains, then
// releases the other ranks). Adds what Open MPI needs to run as root and more ranks than
// cores (--oversubscribe) on small machines.
[[noreturn]] void relaunch_under_mpirun(int n);
// Threads per rank when --threads is not given: physical cores / ranks, at least 1.
int default_threads();

}  // namespace quanta::dist
