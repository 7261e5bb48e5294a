// MappedFile: a whole file mapped read-only into memory.
//
// Checkpoint readers map their files once and hand out Tensor views into the
// mapping. Views hold the shared_ptr returned by open() as their keepalive, so the
// mapping lives as long as any tensor that points into it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace quanta {

class MappedFile {
 public:
  // Maps `path` read-only. Throws Error naming the file if it cannot be opened,
  // is not a regular file, or cannot be mapped. A zero-size file maps to
  // size() == 0 and data() == nullptr.
  static std::shared_ptr<const MappedFile> open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Whether [p, p + n) lies inside the mapping.
  bool contains(const void* p, size_t n) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads one byte per page of [data, data + n) so mapped weights are resident
// before the first token (a mapping is otherwise read lazily). Returns n.
size_t touch_pages(const void* data, size_t n);

// Drops this process's mapping of the whole pages inside [data, data + n) of a
// read-only file mapping (they stay in the page cache and fault back in from the
// file if read again): the resident size stops counting a range already copied.
void release_pages(const void* data, size_t n);

}  // namespace quanta
