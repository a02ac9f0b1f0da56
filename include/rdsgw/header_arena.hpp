// Where a request's header fields live: Beast's request parser allocates one block per field (and one for
// the request line); with this allocator those blocks come from a per-connection arena that is reset before
// each request, so a request's headers cost no heap allocation (README, "Performance"). The arena's 12 KiB
// buffer comes from a per-thread pool while a request is read and served, not while the connection idles.
// A header block that does not fit (the arena is sized for limits.max_header_bytes' default) spills to the
// heap, block by block.
#pragma once
#include <boost/beast/http/fields.hpp>
#include <cstddef>
#include <memory>
#include <new>
#include <vector>

namespace rdsgw {

class HeaderArena {
  public:
    static constexpr std::size_t kBytes = 12 * 1024;
    HeaderArena() = default;
    HeaderArena(const HeaderArena&) = delete;
    HeaderArena& operator=(const HeaderArena&) = delete;
    ~HeaderArena() { give_back(); }

    void* allocate(std::size_t n, std::size_t align) {
        if (!buf_) buf_ = take();
        const std::size_t at = (used_ + align - 1) & ~(align - 1);
        if (at + n <= kBytes) {
            used_ = at + n;
            return buf_->bytes + at;
        }
        return ::operator new(n, std::align_val_t(align));
    }
    void deallocate(void* p, std::size_t align) noexcept {
        if (!owns(p)) ::operator delete(p, std::align_val_t(align));
    }
    // Only when nothing allocated from it is alive any more (the previous request's parser is gone). The
    // buffer goes back to the thread's pool: a connection waiting for its next request holds none.
    void reset() {
        used_ = 0;
        give_back();
    }
    std::size_t used() const { return used_; }
    bool holds_buffer() const { return buf_ != nullptr; }

  private:
    // The 12 KiB buffers: taken when a request's first header field is parsed, given back when the next
    // request starts, and kept in a per-thread pool in between (at most kPoolMax free ones per thread), so a
    // request allocates no buffer in steady state and an idle keep-alive connection costs no 12 KiB.
    struct Buffer {
        alignas(std::max_align_t) unsigned char bytes[kBytes];
    };
    static constexpr std::size_t kPoolMax = 256;
    struct Pool {
        std::vector<Buffer*> free;
        ~Pool() {
            for (Buffer* b : free) delete b;
        }
    };
    static Pool& pool() {
        thread_local Pool p;
        return p;
    }
    static Buffer* take() {
        Pool& p = pool();
        if (p.free.empty()) return new Buffer;
        Buffer* b = p.free.back();
        p.free.pop_back();
        return b;
    }
    void give_back() noexcept {
        if (!buf_) return;
        Pool& p = pool();
        if (p.free.size() < kPoolMax) {
            try {
                p.free.push_back(buf_);
            } catch (...) {  // no room for the pointer: the buffer goes instead
                delete buf_;
            }
        } else {
            delete buf_;
        }
        buf_ = nullptr;
    }
    bool owns(const void* p) const {
        if (!buf_) return false;
        const auto* b = static_cast<const unsigned char*>(p);
        return b >= buf_->bytes && b < buf_->bytes + kBytes;
    }
    Buffer* buf_ = nullptr;
    std::size_t used_ = 0;
};

// A standard allocator over a HeaderArena (plain operator new/delete when it has none).
template <class T>
class ArenaAllocator {
  public:
    using value_type = T;
    ArenaAllocator() noexcept = default;
    explicit ArenaAllocator(HeaderArena* a) noexcept : arena_(a) {}
    template <class U>
    ArenaAllocator(const ArenaAllocator<U>& o) noexcept : arena_(o.arena()) {}

    T* allocate(std::size_t n) {
        if (!arena_) return std::allocator<T>().allocate(n);
        return static_cast<T*>(arena_->allocate(n * sizeof(T), alignof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (!arena_) return std::allocator<T>().deallocate(p, n);
        arena_->deallocate(p, alignof(T));
    }
    HeaderArena* arena() const noexcept { return arena_; }
    template <class U>
    bool operator==(const ArenaAllocator<U>& o) const noexcept {
        return arena_ == o.arena();
    }

  private:
    HeaderArena* arena_ = nullptr;
};

// A request's header fields as the session parses them.
using RequestFields = boost::beast::http::basic_fields<ArenaAllocator<char>>;

}  // namespace rdsgw
