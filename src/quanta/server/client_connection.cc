#include "quanta/server/client_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

namespace quanta::server {
namespace {

// "address", port of a socket address (IPv4 or IPv6), or false for another family.
bool endpoint(const sockaddr_storage& sa, std::string* addr, int* port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (sa.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(sa);
    if (!inet_ntop(AF_INET, &in.sin_addr, text, sizeof text)) return false;
    *port = ntohs(in.sin_port);
  } else if (sa.ss_family == AF_INET6) {
    const auto& in = reinterpret_cast<const sockaddr_in6&>(sa);
    if (!inet_ntop(AF_INET6, &in.sin6_addr, text, sizeof text)) return false;
    *port = ntohs(in.sin6_port);
  } else {
    return false;
  }
  *addr = text;
  return true;
}

bool has_endpoints(int fd, const std::string& remote_addr, int remote_port, const std::string& local_addr,
                   int local_port) {
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  std::string addr;
  int port = 0;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || !endpoint(sa, &addr, &port) ||
      port != remote_port || addr != remote_addr)
    return false;
  len = sizeof sa;
  return getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0 && endpoint(sa, &addr, &port) &&
         port == local_port && addr == local_addr;
}

}  // namespace

ClientConnection::ClientConnection(const std::string& remote_addr, int remote_port, const std::string& local_addr,
                                   int local_port) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    const std::string name = entry.path().filename().string();
    char* end = nullptr;
    const long fd = std::strtol(name.c_str(), &end, 10);
    if (end == name.c_str() || *end != '\0') continue;
    if (has_endpoints(static_cast<int>(fd), remote_addr, remote_port, local_addr, local_port)) {
      fd_ = static_cast<int>(fd);
      return;
    }
  }
}

bool ClientConnection::closed() const {
  if (fd_ < 0) return false;
  char c;
  const ssize_t r = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r == 0) return true;  // orderly close
  if (r < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;  // reset
  return false;
}

}  // namespace quanta::server
