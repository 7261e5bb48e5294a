// The TCP connection a request arrived on, to notice a client that hung up while
// a non-streamed answer is still being generated. cpp-httplib 0.11 hands
// handlers no socket, so the connection is found by its two endpoints.
#pragma once

#include <string>

namespace quanta::server {

class ClientConnection {
 public:
  // Finds this process's socket whose local and remote address:port are the
  // given ones (as cpp-httplib reports them). If none matches, closed() is
  // always false: the request then runs to its end, as before.
  ClientConnection(const std::string& remote_addr, int remote_port, const std::string& local_addr, int local_port);

  bool found() const { return fd_ >= 0; }
  // True once the client closed or reset the connection. A pipelined next
  // request waiting to be read does not count as closed.
  bool closed() const;

 private:
  int fd_ = -1;
};

}  // namespace quanta::server
