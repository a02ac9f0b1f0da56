-- wrk script for scripts/bench.sh's l2 scenario: every key of a fixed, deterministic key set asked at most
-- once per run, the set split between wrk's threads.
--
--   wrk ... -s bench/l2.lua http://HOST:PORT -- <project_id> <nonce> <keys> <wrk_threads> <marker>
--
-- Key i (0 <= i < keys) is backup_id = 8 hex (nonce) + 24 hex (i) + "br01": 36 characters, the shape of a
-- real MySQL backup id, the same ids on every run with the same nonce (so one run can fill the shared tier
-- through one gateway and the next ask for the same keys through another). Thread t asks for its own
-- contiguous share of the keys; when it has sent all of them, the few requests wrk still makes (a
-- connection becoming writable after the last key) repeat the thread's first key (an L1 hit by then, counted
-- as "repeats"); once it has as many answers as keys, it stops and leaves the file <marker><t>, so the
-- caller can stop wrk early (wrk itself would wait out -d). Counts X-Cache values per thread.

local threads = {}
local next_tid = 0

function setup(thread)
    thread:set("tid", next_tid)
    next_tid = next_tid + 1
    table.insert(threads, thread)
end

local path_head, nonce, first, share, marker
-- Globals, so that done() can read them from each thread with thread:get().
sent = 0
repeats = 0
responses = 0
xcache_hit = 0
xcache_coalesced = 0
xcache_miss = 0
xcache_other = 0

function init(args)
    local project = args[1] or "97b026aa9cc4417888c14c84a1ad9860"
    nonce = (tonumber(args[2] or "0") or 0) % 4294967296
    local keys = tonumber(args[3] or "0") or 0
    local nthreads = tonumber(args[4] or "1") or 1
    marker = args[5] or ""
    local tid = wrk.thread:get("tid")
    local per = math.ceil(keys / nthreads)
    first = tid * per
    share = math.max(0, math.min(per, keys - first))
    path_head = "/v3/" .. project .. "/backup-files?backup_id=" .. string.format("%08x", nonce)
end

local function key_path(i)
    return path_head .. string.format("%024xbr01", i)
end

function request()
    if sent < share then
        sent = sent + 1
        return wrk.format("GET", key_path(first + sent - 1))
    end
    repeats = repeats + 1
    return wrk.format("GET", key_path(share > 0 and first or 0))
end

function response(status, headers, body)
    responses = responses + 1
    local x = headers["X-Cache"]
    if x == "HIT" then
        xcache_hit = xcache_hit + 1
    elseif x == "MISS" then
        xcache_miss = xcache_miss + 1
    elseif x == "COALESCED" then
        xcache_coalesced = xcache_coalesced + 1
    else
        xcache_other = xcache_other + 1
    end
    if responses >= share and sent >= share then
        if marker ~= "" then
            local f = io.open(marker .. wrk.thread:get("tid"), "w")
            if f then f:close() end
        end
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local n = {sent = 0, repeats = 0, xcache_hit = 0, xcache_miss = 0, xcache_coalesced = 0, xcache_other = 0}
    for _, t in ipairs(threads) do
        for k, v in pairs(n) do n[k] = v + (t:get(k) or 0) end
    end
    io.write(string.format("BENCH l2 distinct_keys %d repeats %d xcache_hit %d xcache_miss %d xcache_coalesced %d " ..
                           "xcache_other %d\n", n.sent, n.repeats, n.xcache_hit, n.xcache_miss,
                           n.xcache_coalesced, n.xcache_other))
end
