#include "quanta/dist/comm.h"

#include <mpi.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "quanta/core/error.h"
#include "quanta/core/thread_pool.h"

namespace quanta::dist {

namespace {

class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_reduce_max(float*, int64_t) override {}
  void broadcast(void*, size_t, int) override {}
  void gather(const float* send, int64_t n, float* recv, int) override {
    if (recv != send) std::memcpy(recv, send, static_cast<size_t>(n) * sizeof(float));
  }
};

// Fails loudly: an MPI error inside a step leaves the ranks out of step, so the job ends
// (MPI_ERRORS_ARE_FATAL is the default handler; this names the call for the log).
void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(std::string(call) + " failed: " + std::string(text, static_cast<size_t>(len)));
}

class Mpi : public Communicator {
 public:
  Mpi() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(float* data, int64_t n) override {
    const auto t0 = std::chrono::steady_clock::now();
    check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    reduce_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++reduce_calls;
  }
  void all_reduce_max(float* data, int64_t n) override {
    check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
  }
  void broadcast(void* data, size_t n_bytes, int root) override {
    check(MPI_Bcast(data, static_cast<int>(n_bytes), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  void broadcast_idle(void* data, size_t n_bytes, int root) override {
    MPI_Request req;
    check(MPI_Ibcast(data, static_cast<int>(n_bytes), MPI_BYTE, root, MPI_COMM_WORLD, &req), "MPI_Ibcast");
    if (rank_ == root) return check(MPI_Wait(&req, MPI_STATUS_IGNORE), "MPI_Wait");
    // Poll quickly while steps come back to back, then back off to 2 ms while idle.
    int done = 0, polls = 0;
    while (true) {
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) return;
      if (++polls > 2000) std::this_thread::sleep_for(std::chrono::microseconds(polls > 20000 ? 2000 : 50));
    }
  }
  void gather(const float* send, int64_t n, float* recv, int root) override {
    check(MPI_Gather(send, static_cast<int>(n), MPI_FLOAT, recv, static_cast<int>(n), MPI_FLOAT, root, MPI_COMM_WORLD),
          "MPI_Gather");
  }

 private:
  int rank_ = 0, size_ = 1;
};

Communicator* g_world = nullptr;
std::vector<std::string> g_argv;

// The pid of rank 0 of the job this process launched (0 if not found): the process whose
// environment has QUANTA_TP_LAUNCHER=launcher and OMPI_COMM_WORLD_RANK=0.
pid_t find_rank0(const std::string& launcher) {
  const std::string mark = "QUANTA_TP_LAUNCHER=" + launcher, rank = "OMPI_COMM_WORLD_RANK=0";
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream f(e.path() / "environ", std::ios::binary);
    if (!f) continue;
    std::string var;
    bool ours = false, zero = false;
    while (std::getline(f, var, '\0')) {
      ours |= var == mark;
      zero |= var == rank;
    }
    if (ours && zero) return static_cast<pid_t>(std::atoi(e.path().filename().c_str()));
  }
  return 0;
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace

Communicator& world() {
  static SingleProcess single;
  return g_world ? *g_world : single;
}

bool launched_by_mpi() {
  // Open MPI's mpirun, and the PMI launchers (MPICH's hydra, Slurm's srun).
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

void init(int argc, char** argv) {
  set_command_line(argc, argv);
  if (!launched_by_mpi() || g_world) return;
  int provided = 0;
  // Serialized: the server's scheduler thread, not main, runs the steps on rank 0.
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  if (provided < MPI_THREAD_SERIALIZED) throw Error("this MPI library does not allow calls from more than one thread");
  std::atexit(finalize_at_exit);
  static Mpi mpi;
  g_world = &mpi;
}

void abort_job(int code) {
  std::fflush(nullptr);
  if (g_world && g_world->size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void set_command_line(int argc, char** argv) {
  g_argv.assign(argv, argv + argc);
}

void relaunch_under_mpirun(int n) {
  if (g_argv.empty()) throw Error("the command line is unknown; cannot relaunch under mpirun", {.field = "--tp-size"});
  // Open MPI refuses root unless both variables are set (containers and CI run as root);
  // the shared-memory transport's single-copy mode needs ptrace rights containers lack.
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  std::string exe = len > 0 ? std::string(self, static_cast<size_t>(len)) : g_argv[0];
  std::vector<std::string> args = {"mpirun", "-np", std::to_string(n), "--oversubscribe", "--bind-to", "none", exe};
  args.insert(args.end(), g_argv.begin() + 1, g_argv.end());
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  // The ranks carry this process's id, so that it can find rank 0 among them.
  const std::string parent = std::to_string(getpid());
  setenv("QUANTA_TP_LAUNCHER", parent.c_str(), 1);
  std::fflush(nullptr);
  const pid_t child = fork();
  if (child < 0) throw Error("cannot fork to start mpirun: " + std::string(std::strerror(errno)), {.field = "--tp-size"});
  if (child == 0) {
    execvp("mpirun", cargs.data());
    std::fprintf(stderr, "quanta: error: field '--tp-size': cannot start mpirun (%s); install Open MPI (openmpi-bin) "
                 "or start quanta under mpirun -np %d\n", std::strerror(errno), n);
    std::_Exit(127);
  }
  // This process stays as the job's face: SIGTERM/SIGINT go to rank 0 alone (mpirun would
  // end every rank at once; rank 0 drains its requests, then releases the others), a second
  // one to mpirun, which ends the job. Exits with mpirun's status.
  static volatile std::sig_atomic_t signals = 0;
  auto on_signal = [](int) { signals = signals + 1; };
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  int forwarded = 0;
  while (true) {
    int status = 0;
    const pid_t done = waitpid(child, &status, WNOHANG);
    if (done == child) std::_Exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    if (signals > forwarded) {
      const pid_t rank0 = forwarded == 0 ? find_rank0(parent) : 0;
      kill(rank0 > 0 ? rank0 : child, SIGTERM);
      forwarded = signals;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int default_threads() {
  return std::max(1, ThreadPool::physical_cores() / world().size());
}

}  // namespace quanta::dist
