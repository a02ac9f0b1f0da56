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
// blocks; freed blocks go on the run's free list and are reused first, a run whose blocks are all free goes
// back to the chunk pool (one empty run per class is kept, so a class with one block coming and going does
// not take a run each time). Blocks outside the range go to the general allocator (jemalloc's classes are
// 16-64 bytes apart below 512). Each class has its own mutex: a block is allocated when an answer is built (a
// miss) and freed when its last reference goes (eviction, expiry), never on a cache hit.
//
// The runs come from 2 MiB chunks mapped for them (mmap), aligned and marked MADV_HUGEPAGE: where the kernel
// allows transparent huge pages (Debian's default, "madvise"), a chunk is one huge page, taken with one page
// fault instead of 512. Filling the cache used to fault in a 4 KiB page every five misses or so, and a page
// fault is dear on a VM (README, "What the ninth round changed"). A chunk whose runs are all back in the pool
// is unmapped, but for one kept empty (a cache shrinking and growing around a chunk's worth would otherwise
// map and unmap it each time). The pool has its own mutex, taken once per run (about 90 answers of the
// bench's size), always after a class's.
//
// The price: a class in use holds at least one run, so a cache whose answers spread over many classes keeps
// up to one partly filled run per class (at most 96 x 64 KiB = 6 MiB, reached only with a few blocks in each
// of the 96 classes); a chunk stays mapped while any of its 32 runs is in use, and one empty chunk is kept
// (2 MiB). Under AddressSanitizer a free block's bytes and a block's unused tail are poisoned, so a use after
// free or an overflow into the class's rounding is still reported.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace rdsgw {

class FineSlab {
  public:
    static constexpr std::size_t kMin = 512;   // blocks of at most this many bytes: the general allocator
    static constexpr std::size_t kMax = 4096;  // blocks above this: the general allocator
    static constexpr std::size_t kRunBytes = 64 * 1024;
    static constexpr std::size_t kChunkBytes = 2 * 1024 * 1024;  // runs are carved from chunks this size
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
        std::size_t runs = 0;    // runs held by the classes (each kRunBytes)
        std::size_t blocks = 0;  // blocks allocated from them
        std::size_t chunks = 0;  // chunks mapped (each kChunkBytes), the one kept empty included
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
    struct FreeRun;
    // The chunk pool (pool_mu_): runs handed to the classes and taken back.
    void* take_run();
    void give_run(void* run) noexcept;
    void new_chunk();                       // under pool_mu_
    void push_free(void* run) noexcept;     // under pool_mu_
    void unlink_free(FreeRun* f) noexcept;  // under pool_mu_
    static std::uintptr_t chunk_of(const void* run) noexcept;
    static std::size_t index(std::size_t n) noexcept;
    static std::size_t size_of(std::size_t cls) noexcept;
    static std::size_t capacity_of(std::size_t cls) noexcept;
    std::array<Class, kClasses> classes_{};
    mutable std::mutex pool_mu_;
    FreeRun* free_runs_ = nullptr;                      // doubly linked, most recently returned first
    std::map<std::uintptr_t, std::size_t> chunk_runs_;  // chunk address -> its runs handed out
    std::size_t empty_chunks_ = 0;                      // chunks with no run handed out (at most one kept)
};

}  // namespace rdsgw
