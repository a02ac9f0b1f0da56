// FineSlab: an allocator with fine size classes for the cache's answer blocks (README, "Where the bytes go").
//
// Why our own: a cached answer is one block of a few hundred bytes to a few KiB that lives as long as its
// entry, and 100,000 of them are most of the gateway's memory. jemalloc (and glibc's malloc, and Boost.Pool's
// pools) round such a block up to a size class a quarter of a power of two wide: 513-768 bytes take 768, so
// the bench's 712-byte answer loses 56 bytes, 7 % of the cache. No allocator in Debian offers finer classes
// for this range: Boost.Pool's contiguous multi-chunk allocation (ordered_malloc(n)) searches its free list
// on every call, and std::pmr's pool resources round to powers of two.
//
// What it does: 32 classes per doubling between 512 bytes and 4 KiB (16 bytes apart up to 1 KiB, 32 up to
// 2 KiB, 64 up to 4 KiB: a block loses at most 1/32 of its size, under 2 % on average), each class in runs of
// 64 KiB aligned to their size, so a block's run is found from its address. A run is a header, then its
// blocks; freed blocks go on the run's free list and are reused first, a run whose blocks are all free is
// returned to the general allocator (one empty run per class is kept, so a class with one block coming and
// going does not allocate a run each time). Blocks outside the range go to the general allocator (jemalloc's
// classes are 16-64 bytes apart below 512). Each class has its own mutex: a block is allocated when an answer
// is built (a miss) and freed when its last reference goes (eviction, expiry), never on a cache hit.
//
// The price: a class in use holds at least one run, so a cache whose answers spread over many classes keeps
// up to one partly filled run per class (at most 96 x 64 KiB = 6 MiB, reached only with a few blocks in each
// of the 96 classes). Under AddressSanitizer a free block's bytes and a block's unused tail are poisoned, so
// a use after free or an overflow into the class's rounding is still reported.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace rdsgw {

class FineSlab {
  public:
    static constexpr std::size_t kMin = 512;   // blocks of at most this many bytes: the general allocator
    static constexpr std::size_t kMax = 4096;  // blocks above this: the general allocator
    static constexpr std::size_t kRunBytes = 64 * 1024;
    static constexpr std::size_t kClasses = 96;

    FineSlab();
    ~FineSlab();  // returns its runs; every block must have been deallocated
    FineSlab(const FineSlab&) = delete;
    FineSlab& operator=(const FineSlab&) = delete;

    // Throws std::bad_alloc. Blocks are aligned to 16 bytes.
    void* allocate(std::size_t n);
    // n: the size given to allocate().
    void deallocate(void* p, std::size_t n) noexcept;

    // The bytes a block of n takes in its class (n itself outside [kMin + 1, kMax]).
    static std::size_t class_size(std::size_t n) noexcept;

    struct Stats {
        std::size_t runs = 0;    // runs held (each kRunBytes)
        std::size_t blocks = 0;  // blocks allocated from them
    };
    Stats stats() const;

    // The process-wide instance CachedAnswer uses (never destroyed: answers may outlive static destructors).
    static FineSlab& answers();

  private:
    struct Run;
    struct alignas(64) Class {
        mutable std::mutex mu;
        Run* partial = nullptr;  // runs with a free block (a doubly linked list)
        std::size_t runs = 0;
        std::size_t blocks = 0;
    };
    static std::size_t index(std::size_t n) noexcept;
    static std::size_t size_of(std::size_t cls) noexcept;
    static std::size_t capacity_of(std::size_t cls) noexcept;
    std::array<Class, kClasses> classes_{};
};

}  // namespace rdsgw
