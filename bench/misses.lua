-- wrk script for scripts/bench.sh: every request asks for a backup_id never asked before, so every
-- request is a cache miss that goes upstream.
--
--   wrk ... -s bench/misses.lua http://HOST:PORT -- <project_id> <nonce> [<responses_per_thread> <marker>]
--
-- backup_id = 8 hex (nonce) + 8 hex (thread number) + 16 hex (per-thread counter) + "br01": 36
-- characters, the shape of a real MySQL backup id. A fresh nonce per run keeps runs (and the two
-- proxies) apart. With <responses_per_thread>, each thread stops after that many responses (used to
-- fill a cache with a known number of distinct entries; the requests in flight at the stop make it a
-- few more). Non-200 answers show up in wrk's own "Non-2xx or 3xx responses" line.

local threads = {}
local next_tid = 0

function setup(thread)
    thread:set("tid", next_tid)
    next_tid = next_tid + 1
    table.insert(threads, thread)
end

local prefix, path_head, limit, marker
-- Globals, so that done() can read them from each thread with thread:get().
counter = 0
responses = 0

function init(args)
    local project = args[1] or "97b026aa9cc4417888c14c84a1ad9860"
    local nonce = tonumber(args[2] or "0") or 0
    limit = tonumber(args[3] or "0") or 0
    marker = args[4] or ""
    prefix = string.format("%08x%08x", nonce % 4294967296, wrk.thread:get("tid"))
    path_head = "/v3/" .. project .. "/backup-files?backup_id=" .. prefix
    -- wrk hands every response to Lua only when response() exists, which costs; keep it for fills only.
    if limit == 0 then response = nil end
end

function request()
    counter = counter + 1
    return wrk.format("GET", path_head .. string.format("%016xbr01", counter))
end

function response(status, headers, body)
    responses = responses + 1
    if responses == limit then
        if marker ~= "" then
            local f = io.open(marker .. wrk.thread:get("tid"), "w")
            if f then f:close() end
        end
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local sent = 0
    for _, t in ipairs(threads) do sent = sent + (t:get("counter") or 0) end
    io.write(string.format("BENCH distinct_ids %d\n", sent))
end
