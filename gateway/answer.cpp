// CachedAnswer: one block per answer (see include/rdsgw/answer.hpp).
#include "rdsgw/answer.hpp"

#include "rdsgw/slab.hpp"

#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>

namespace rdsgw {

static_assert(sizeof(CachedAnswer) == 32, "the header's size is in README and kEntryOverhead");

AnswerPtr CachedAnswer::make(const AnswerFields& f) {
    constexpr std::size_t kMax = std::numeric_limits<std::uint32_t>::max();
    if (f.body.size() > kMax || f.upstream_request_id.size() > kMax - f.body.size())
        throw std::length_error("answer too large");
    static_assert(alignof(CachedAnswer) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    // Fine size classes (rdsgw/slab.hpp): under 2 % lost to rounding where jemalloc's classes lose 7 %.
    void* block =
        FineSlab::answers().allocate(sizeof(CachedAnswer) + f.upstream_request_id.size() + f.body.size());
    auto* a = new (block) CachedAnswer;
    a->status_ = f.status;
    a->id_size_ = static_cast<std::uint32_t>(f.upstream_request_id.size());
    a->body_size_ = static_cast<std::uint32_t>(f.body.size());
    a->earliest_expiry_ = f.earliest_expiry;
    a->stored_at_ = f.stored_at;
    char* tail = reinterpret_cast<char*>(a + 1);
    if (!f.upstream_request_id.empty()) std::memcpy(tail, f.upstream_request_id.data(), a->id_size_);
    if (!f.body.empty()) std::memcpy(tail + a->id_size_, f.body.data(), a->body_size_);
    return AnswerPtr(a);
}

void CachedAnswer::destroy(const CachedAnswer* a) noexcept {
    const std::size_t size = sizeof(CachedAnswer) + a->id_size_ + a->body_size_;
    a->~CachedAnswer();
    FineSlab::answers().deallocate(const_cast<CachedAnswer*>(a), size);
}

std::size_t CachedAnswer::footprint(std::size_t key_size) const {
    return body_size_ + id_size_ + key_size + kEntryOverhead;
}

}  // namespace rdsgw
