// An answer as the gateway serves it and caches it: one immutable, reference-counted block (the cache, the
// shared tier's sealing and the responses share it). Pure: no Asio.
#pragma once
#include <atomic>
#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rdsgw {

using SysClock = std::chrono::system_clock;

// What an answer is made of (CachedAnswer::make copies the bytes; the views need to live only for the call).
struct AnswerFields {
    unsigned status = 200;
    std::string_view body{};
    std::string_view upstream_request_id{};
    SysClock::time_point earliest_expiry = SysClock::time_point::max();
    SysClock::time_point stored_at{};
};

class CachedAnswer;
using AnswerPtr = boost::intrusive_ptr<const CachedAnswer>;

// An answer as the gateway serves it: immutable once built, shared between the cache and responses.
// One heap block: this header (its own reference count; 32 bytes) with the request id's and the body's bytes
// right after it. A std::shared_ptr made with make_shared plus two std::strings took three blocks (112, the
// body's size class and the id's; 144 bytes more per entry for the bench's answer, README "Where the bytes
// go"). Built only by make(); neither copied nor moved (copy with make(a.fields())).
class CachedAnswer {
  public:
    // 200; negative entries: 404 (RDS's error passed through) or 502: the gateway's own refusal of the
    // upstream's answer (e.g. links that expire within the margin), kept briefly so that a broken upstream
    // is not asked again at once.
    static AnswerPtr make(const AnswerFields& f);  // throws std::length_error past 4 GiB

    unsigned status() const { return status_; }
    // The canonical JSON body; RDS's error body for a 404; the refusal's message for a 502.
    std::string_view body() const { return {tail() + id_size_, body_size_}; }
    std::string_view upstream_request_id() const { return {tail(), id_size_}; }
    SysClock::time_point earliest_expiry() const { return earliest_expiry_; }  // of the links inside
    SysClock::time_point stored_at() const { return stored_at_; }
    // Views into this answer: valid while the answer is (hold its AnswerPtr, not a temporary).
    AnswerFields fields() const {
        return {status_, body(), upstream_request_id(), earliest_expiry_, stored_at_};
    }

    // Honest size accounting: the body, the id, the key and a fixed per-entry overhead.
    std::size_t footprint(std::size_t key_size) const;
    // The fixed part: the cache's entry block (LRU links and fields; its key is counted apart) and its index
    // slot, this header, and the allocator's rounding to size classes (gateway/cache.cpp checks this bound
    // against the real sizes at compile time).
    static constexpr std::size_t kEntryOverhead = 144;

    CachedAnswer(const CachedAnswer&) = delete;
    CachedAnswer& operator=(const CachedAnswer&) = delete;

    friend void intrusive_ptr_add_ref(const CachedAnswer* a) noexcept {
        a->refs_.fetch_add(1, std::memory_order_relaxed);
    }
    friend void intrusive_ptr_release(const CachedAnswer* a) noexcept {
        if (a->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(a);
    }

  private:
    CachedAnswer() = default;
    ~CachedAnswer() = default;
    static void destroy(const CachedAnswer* a) noexcept;
    const char* tail() const { return reinterpret_cast<const char*>(this + 1); }

    mutable std::atomic<std::uint32_t> refs_{0};
    std::uint32_t status_ = 200;
    std::uint32_t id_size_ = 0;
    std::uint32_t body_size_ = 0;
    SysClock::time_point earliest_expiry_ = SysClock::time_point::max();
    SysClock::time_point stored_at_{};
};

}  // namespace rdsgw
