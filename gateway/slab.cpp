// FineSlab (see include/rdsgw/slab.hpp).
#include "rdsgw/slab.hpp"

#include <sys/mman.h>

#include <bit>
#include <cassert>
#include <cstring>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define RDSGW_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RDSGW_ASAN 1
#endif
#endif
#ifdef RDSGW_ASAN
#include <sanitizer/asan_interface.h>
#define RDSGW_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define RDSGW_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define RDSGW_POISON(p, n) ((void)(p), (void)(n))
#define RDSGW_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace rdsgw {

// A run's header, at the start of its kRunBytes-aligned block; its blocks follow at kHeader.
struct FineSlab::Run {
    Run* prev = nullptr;  // in the class's list of runs with a free block
    Run* next = nullptr;
    void* free = nullptr;      // freed blocks, each holding the next one's address
    std::uint32_t live = 0;    // blocks allocated
    std::uint32_t bumped = 0;  // blocks ever handed out from the never-used tail
    // A run is in its class's list exactly while it has a free block (live < the class's capacity).
};

namespace {
constexpr std::size_t kHeader = 64;  // keeps blocks 16-byte aligned

void general_delete(void* p, std::size_t n) noexcept {
#if defined(__cpp_sized_deallocation)
    ::operator delete(p, n);
#else  // clang before 19 without -fsized-deallocation (the fuzz build)
    (void)n;
    ::operator delete(p);
#endif
}
}  // namespace

std::size_t FineSlab::index(std::size_t n) noexcept {
    // n in (512, 4096]: b = floor(log2(n - 1)) in 9..11, 32 classes of 2^(b-5) bytes in [2^b, 2^(b+1)).
    const std::size_t m = n - 1;
    const unsigned b = static_cast<unsigned>(std::bit_width(m)) - 1;
    return (b - 9) * 32 + ((m - (std::size_t{1} << b)) >> (b - 5));
}

std::size_t FineSlab::size_of(std::size_t cls) noexcept {
    const std::size_t b = 9 + cls / 32;
    return (std::size_t{1} << b) + (cls % 32 + 1) * (std::size_t{1} << (b - 5));
}

std::size_t FineSlab::capacity_of(std::size_t cls) noexcept {
    return (kRunBytes - kHeader) / size_of(cls);
}

std::size_t FineSlab::class_size(std::size_t n) noexcept {
    if (n <= kMin || n > kMax) return n;
    return size_of(index(n));
}

FineSlab::FineSlab() {
    static_assert(sizeof(Run) <= kHeader);
}

FineSlab::~FineSlab() {
    for (auto& c : classes_) {
        assert(c.blocks == 0);
        while (Run* r = c.partial) {
            c.partial = r->next;
            RDSGW_UNPOISON(r, kRunBytes);
            r->~Run();
            give_run(r);
        }
    }
    // Every run is back: the chunks are all empty now, the one kept as well.
    for (const auto& [chunk, used] : chunk_runs_) {
        assert(used == 0);
        (void)used;
        RDSGW_UNPOISON(reinterpret_cast<void*>(chunk), kChunkBytes);
        ::munmap(reinterpret_cast<void*>(chunk), kChunkBytes);
    }
}

// A run not handed out: in the pool's list of free runs (its first bytes).
struct FineSlab::FreeRun {
    FreeRun* prev = nullptr;
    FreeRun* next = nullptr;
};

void* FineSlab::take_run() {
    std::lock_guard lk(pool_mu_);
    if (!free_runs_) new_chunk();
    FreeRun* f = free_runs_;
    unlink_free(f);
    f->~FreeRun();
    RDSGW_UNPOISON(f, kRunBytes);  // the class poisons what it does not hand out
    if (chunk_runs_[chunk_of(f)]++ == 0) --empty_chunks_;
    return f;
}

void FineSlab::give_run(void* run) noexcept {
    std::lock_guard lk(pool_mu_);
    push_free(run);
    // A dangling pointer into a pooled run is still reported (as it was while runs went to operator delete).
    RDSGW_POISON(static_cast<char*>(run) + sizeof(FreeRun), kRunBytes - sizeof(FreeRun));
    const auto it = chunk_runs_.find(chunk_of(run));
    assert(it != chunk_runs_.end() && it->second > 0);
    if (--it->second > 0) return;
    if (empty_chunks_ == 0) {  // kept: a cache that shrinks and grows again around a chunk's worth
        ++empty_chunks_;
        return;
    }
    const auto base = reinterpret_cast<char*>(it->first);
    for (std::size_t i = 0; i < kChunkBytes / kRunBytes; ++i)
        unlink_free(reinterpret_cast<FreeRun*>(base + i * kRunBytes));
    chunk_runs_.erase(it);
    RDSGW_UNPOISON(base, kChunkBytes);  // a later mapping at this address starts clean
    ::munmap(base, kChunkBytes);
}

void FineSlab::new_chunk() {
    // Twice the size, then trimmed to the aligned chunk: mmap aligns to pages only.
    void* m = ::mmap(nullptr, 2 * kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    const auto start = reinterpret_cast<std::uintptr_t>(m);
    const std::uintptr_t chunk = (start + kChunkBytes - 1) & ~(std::uintptr_t{kChunkBytes} - 1);
    if (chunk > start) ::munmap(m, chunk - start);
    if (const std::uintptr_t tail = start + 2 * kChunkBytes - (chunk + kChunkBytes); tail > 0)
        ::munmap(reinterpret_cast<void*>(chunk + kChunkBytes), tail);
        // Huge pages where the kernel allows them (transparent_hugepage "madvise" or "always"); else 4 KiB
        // pages, as before. Nothing to do when it fails.
#ifdef MADV_HUGEPAGE
    ::madvise(reinterpret_cast<void*>(chunk), kChunkBytes, MADV_HUGEPAGE);
#endif
    try {
        chunk_runs_.emplace(chunk, 0);
    } catch (...) {
        ::munmap(reinterpret_cast<void*>(chunk), kChunkBytes);
        throw;
    }
    ++empty_chunks_;
    auto* base = reinterpret_cast<char*>(chunk);
    for (std::size_t i = kChunkBytes / kRunBytes; i-- > 0;) push_free(base + i * kRunBytes);
}

void FineSlab::push_free(void* run) noexcept {
    auto* f = new (run) FreeRun;
    f->next = free_runs_;
    if (free_runs_) free_runs_->prev = f;
    free_runs_ = f;
}

void FineSlab::unlink_free(FreeRun* f) noexcept {
    if (f->prev)
        f->prev->next = f->next;
    else
        free_runs_ = f->next;
    if (f->next) f->next->prev = f->prev;
    f->prev = f->next = nullptr;
}

std::uintptr_t FineSlab::chunk_of(const void* run) noexcept {
    return reinterpret_cast<std::uintptr_t>(run) & ~(std::uintptr_t{kChunkBytes} - 1);
}

void* FineSlab::allocate(std::size_t n) {
    if (n <= kMin || n > kMax) return ::operator new(n);
    const std::size_t cls = index(n);
    const std::size_t size = size_of(cls);
    Class& c = classes_[cls];
    std::lock_guard lk(c.mu);
    Run* r = c.partial;
    if (!r) {
        void* mem = take_run();
        r = new (mem) Run;
        RDSGW_POISON(reinterpret_cast<char*>(r) + kHeader, kRunBytes - kHeader);
        c.partial = r;
        ++c.runs;
    }
    char* p;
    if (r->free) {
        p = static_cast<char*>(r->free);
        RDSGW_UNPOISON(p, sizeof(void*));
        void* next;
        std::memcpy(&next, p, sizeof next);
        r->free = next;
    } else {
        p = reinterpret_cast<char*>(r) + kHeader + std::size_t{r->bumped} * size;
        ++r->bumped;
    }
    RDSGW_UNPOISON(p, n);
    RDSGW_POISON(p + n, size - n);
    ++c.blocks;
    if (++r->live == capacity_of(cls)) {  // full: off the list
        c.partial = r->next;
        if (r->next) r->next->prev = nullptr;
        r->next = nullptr;
    }
    return p;
}

void FineSlab::deallocate(void* p, std::size_t n) noexcept {
    if (!p) return;
    if (n <= kMin || n > kMax) return general_delete(p, n);
    const std::size_t cls = index(n);
    Class& c = classes_[cls];
    Run* r = reinterpret_cast<Run*>(reinterpret_cast<std::uintptr_t>(p) & ~(std::uintptr_t{kRunBytes} - 1));
    std::lock_guard lk(c.mu);
    assert(r->live > 0 && c.blocks > 0);
    RDSGW_UNPOISON(p, sizeof(void*));
    std::memcpy(p, &r->free, sizeof(void*));
    RDSGW_POISON(p, size_of(cls));
    r->free = p;
    const bool was_full = r->live == capacity_of(cls);
    --r->live;
    --c.blocks;
    if (was_full) {  // back on the list, at the front (reused first)
        r->prev = nullptr;
        r->next = c.partial;
        if (c.partial) c.partial->prev = r;
        c.partial = r;
    }
    // An empty run goes back to the general allocator unless it is the class's only run with room.
    if (r->live == 0 && (r->prev || r->next)) {
        if (r->prev)
            r->prev->next = r->next;
        else
            c.partial = r->next;
        if (r->next) r->next->prev = r->prev;
        --c.runs;
        RDSGW_UNPOISON(r, kRunBytes);
        r->~Run();
        give_run(r);
    }
}

FineSlab::Stats FineSlab::stats() const {
    Stats s;
    for (const auto& c : classes_) {
        std::lock_guard lk(c.mu);
        s.runs += c.runs;
        s.blocks += c.blocks;
    }
    std::lock_guard lk(pool_mu_);
    s.chunks = chunk_runs_.size();
    return s;
}

FineSlab& FineSlab::answers() {
    static FineSlab* const slab = new FineSlab;  // never destroyed (see the header)
    return *slab;
}

}  // namespace rdsgw
