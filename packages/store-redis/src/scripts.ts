import type { Cluster, Redis } from 'ioredis';

/**
 * Lua for the hot path and for the few durable writes that must be atomic.
 * Every script gets KEYS[1] = the store's hash tag `{prefix}` and derives the
 * rest of its key names from it, so all keys of one store live in one Cluster
 * slot. Layout (B = `{prefix}`):
 *
 *   B:k:<key>      hash   everything hot about a key in one place, read with one HMGET:
 *                         state fields (coolingUntil, breaker, …, bm:<model> = blocked-until),
 *                         wn/wt = window count/tokens, wo = oldest stamp in the window,
 *                         f = in flight, d/m = current day/month, r:<day>, t:<day>, c:<month>;
 *                         a group of shared limits (ReserveCandidate.shared) keeps its own
 *                         window and counters the same way under its id (no state fields)
 *   B:w:<key>      zset   sliding window: "<leaseId>|<tokens>" -> stamp ('+inf' while in flight:
 *                         it always counts; settled at respondedAt, expired at expiresAt)
 *   B:l:<lease>    string a lease, compact (see leaseRecord): 'a…' active, 'x…' swept and
 *                         waiting for its late report (expires on its own); GETDEL ends it
 *   B:lexp         zset   active lease id -> expiresAt
 *   B:usage        zset   usage records (whole JSON, so a replayed write is a no-op) by time
 *   B:pc:<key>     string background-probe claim: held until (epoch ms, the callers' clock);
 *                         expires on its own a while after that
 *
 * Cost is mostly the number of redis.call per script: a reserve makes 5, a settle 7
 * (5 when the actual tokens equal the estimate); shared limits add the group's HMGET,
 * window ZADD (and ZREM) and HSET to both. The window is trimmed only when a limit check
 * with the untrimmed counts fails (those counts can only be higher, so a pass is exact)
 * or when entries a quarter window past the edge pile up.
 */

const leaseCommon = `
local base = KEYS[1]
-- A lease string: status ('a' active / 'x' swept), flags ('0', '1' probe, '2' shared,
-- '3' shared probe), then est, estCost, reservedAt, expiresAt, day, month, tail JSON, ids (last:
-- the key id, which may hold anything; a shared lease puts "<byte length>␟<group id>" before it).
local function parseLease(rec)
  return string.match(rec, '^(.)(.)\\031([^\\031]*)\\031([^\\031]*)\\031([^\\031]*)\\031([^\\031]*)\\031([^\\031]*)\\031([^\\031]*)\\031[^\\031]*\\031(.*)$')
end
-- A shared lease's ids: group id, key id.
local function splitShared(ids)
  local len, rest = string.match(ids, '^(%d+)\\031(.*)$')
  len = tonumber(len)
  return string.sub(rest, 1, len), string.sub(rest, len + 1)
end
`;

/**
 * The hot path in one script: a batch of reserve ('r') and settle ('s') operations,
 * run in order. ARGV: kind, argument count, arguments..., kind, count, ... Returns one
 * reply per operation. The store sends the reserve/settle calls issued in one tick as
 * one batch (see hot-batch.ts).
 *
 * Within a batch every key hash is read once (HMGET) and written once (HSET/HDEL) at the
 * end, window entries are added with one ZADD per key, and leases, lease expiries and usage
 * records are written with one call each: most of a script's cost is per redis.call, not
 * per field. Each operation sees the effects of the ones before it, as if run alone.
 *
 * reserve arguments: now, windowMs, estTokens, estCost, day, month, dayEndsAt, monthEndsAt,
 * expiresAt, model ('' = none), leaseId, lease middle ("est␟cost␟now␟expiresAt␟day␟month␟tail␟"),
 * ignoreCooldown ('1' = a last resort: cooling and an open breaker's wait do not refuse),
 * then one argument per candidate: "rpm␟tpm␟requestsPerDay␟tokensPerDay␟monthlyBudgetUsd␟keyId"
 * ('' = no limit; the key id last, so it may contain anything), split only for the
 * candidates the script reaches (usually the first). A candidate with shared limits is
 * preceded by its group's argument, "␞" + the same five limits and the group id (last too).
 * Reply: an integer on success, candidate index * 2 + isProbe (the caller builds the lease
 * itself), or {0, hasRetry, retryAfterMs, id1, reason1, ...}.
 *
 * settle arguments: leaseId, tokens, costUsd, now, known ('1': the caller holds the lease
 * record), usage time, usage JSON ('' = none), respondedAt ('' = now). Reply: 0 (already settled), 1 (settled) or
 * 2 (expired); as {status, leaseString} when the caller does not know the lease.
 */
const hot = `${leaseCommon}
-- Key hashes read so far: v[field] = value (false = absent), dirty[field] = write at the end.
local cache, order = {}, {}
local function keyOf(id)
  local e = cache[id]
  if e then return e end
  e = {key = base .. ':k:' .. id, w = base .. ':w:' .. id, v = {}, dirty = {}, adds = {}, pend = {}}
  cache[id] = e
  order[#order + 1] = e
  return e
end
-- Reads, with one HMGET, the fields an operation needs that this batch has not read yet.
local function load(e, names)
  local missing = {}
  for i = 1, #names do
    if e.v[names[i]] == nil then missing[#missing + 1] = names[i] end
  end
  if #missing == 0 then return end
  local vals = redis.call('HMGET', e.key, unpack(missing))
  for i = 1, #missing do e.v[missing[i]] = vals[i] end
end
local function get(e, f)
  local x = e.v[f]
  if x == nil then x = redis.call('HGET', e.key, f); e.v[f] = x end
  return x or nil
end
local function num(e, f) return tonumber(get(e, f)) end
local function put(e, f, x)
  if x == nil then e.v[f] = false else e.v[f] = x end
  e.dirty[f] = true
end
-- Window entries: score = stamp, '+inf' while in flight (always counts, never trimmed).
-- Those added in this batch go out with one ZADD; pend[leaseId] = index of its member.
-- wo = oldest stamp (entries leave only through trims, which recompute it).
local function flushWindow(e)
  if #e.adds > 0 then redis.call('ZADD', e.w, unpack(e.adds)) end
  e.adds, e.pend = {}, {}
end
-- Drops stamped entries with stamp <= cutoff (chunked: unpack has a stack limit); returns
-- the exact window count, tokens and oldest stamp.
local function trim(e, cutoff, wn, wt)
  flushWindow(e)
  while true do
    local old = redis.call('ZRANGEBYSCORE', e.w, '-inf', cutoff, 'LIMIT', 0, 1000)
    if #old == 0 then break end
    for j = 1, #old do wt = wt - (tonumber(string.match(old[j], '|([^|]*)$')) or 0) end
    wn = wn - #old
    redis.call('ZREMRANGEBYRANK', e.w, 0, #old - 1)
    if #old < 1000 then break end
  end
  local first = redis.call('ZRANGEBYSCORE', e.w, '-inf', '(inf', 'LIMIT', 0, 1, 'WITHSCORES')
  wn = math.max(wn, 0)
  -- Repeated float additions and subtractions drift; an empty window is exactly zero.
  if wn == 0 then wt = 0 end
  put(e, 'wn', wn); put(e, 'wt', wt); put(e, 'wo', first[2])
  return wn, wt, tonumber(first[2])
end
-- Calendar rollover, only forward (a process with a lagging clock cannot wipe today). The
-- previous day/month stay readable for late settles and reports; older ones go.
local function rollover(e, day, month)
  local d, m = get(e, 'd'), get(e, 'm')
  local newDay, newMonth = (not d) or day > d, (not m) or month > m
  if not (newDay or newMonth) then return end
  if d or m then
    local function stale(f)
      local p, v = string.sub(f, 1, 2), string.sub(f, 3)
      return (newDay and d and (p == 'r:' or p == 't:') and v < d) or (newMonth and m and p == 'c:' and v < m)
    end
    local drop = {}
    for _, f in ipairs(redis.call('HKEYS', e.key)) do
      if stale(f) then drop[#drop + 1] = f end
    end
    if #drop > 0 then redis.call('HDEL', e.key, unpack(drop)) end
    for _, f in ipairs(drop) do e.v[f] = false; e.dirty[f] = nil end
    for f in pairs(e.dirty) do
      if stale(f) then e.v[f] = false; e.dirty[f] = nil end
    end
  end
  if newDay then put(e, 'd', day) end
  if newMonth then put(e, 'm', month) end
end

-- Leases created in this batch (id -> string, false once settled), in order; expiries to
-- add and to remove; usage records to append.
local newLeases, leaseOrder, expiryAdds, expiryRemoves, usage = {}, {}, {}, {}, {}

-- "rpm␟tpm␟requestsPerDay␟tokensPerDay␟monthlyBudgetUsd␟id" ('' = no limit; the id last, so
-- it may contain anything): a candidate's key, or (after a U+001E) the group it shares.
local limitsPattern = '^([^\\031]*)\\031([^\\031]*)\\031([^\\031]*)\\031([^\\031]*)\\031([^\\031]*)\\031(.*)$'
-- The reserve being run, read by overLimit and charge (set by reserve).
local reserveArgs, reserveBase, now, windowMs, cutoff, staleEdge, est, estCost, day, month, rF, tF, cF, leaseId

-- The first limit e (a key or a group) fails for the reserve being run: reason and retry
-- time (nil when unknown); on a pass nil, nil and the window and calendar counts to charge.
local function overLimit(e, rpmS, tpmS, rpdS, tpdS, budgetS)
  local wn, wt, wo = num(e, 'wn') or 0, num(e, 'wt') or 0, num(e, 'wo')
  local rpm, tpm = tonumber(rpmS), tonumber(tpmS)
  -- Counts that still hold entries past the window are only ever higher: a pass is exact.
  if wo and wo <= cutoff and ((rpm and wn + 1 > rpm) or (tpm and wt + est > tpm) or wo <= staleEdge) then
    wn, wt, wo = trim(e, cutoff, wn, wt)
  end
  local r, t, cm = num(e, rF) or 0, num(e, tF) or 0, num(e, cF) or 0
  local rpd, tpd, budget = tonumber(rpdS), tonumber(tpdS), tonumber(budgetS)
  -- The oldest stamped entry leaves first; entries in flight no sooner than a window from now.
  if rpm and wn + 1 > rpm then return 'rpm', (wo or now) + windowMs end
  if tpm and wt + est > tpm then
    if est <= tpm then return 'tpm', (wo or now) + windowMs end
    return 'tpm'
  end
  if rpd and r + 1 > rpd then return 'requests-per-day', tonumber(reserveArgs[reserveBase + 7]) end
  if tpd and t + est > tpd then return 'tokens-per-day', tonumber(reserveArgs[reserveBase + 7]) end
  if budget and cm + estCost > budget then return 'monthly-budget', tonumber(reserveArgs[reserveBase + 8]) end
  return nil, nil, wn, wt, r, t, cm
end

-- Charges the reserve being run to e (a key or a group): window entry member (in flight),
-- one request, the estimated tokens and cost, one in flight. The counts are overLimit's.
local function charge(e, member, wn, wt, r, t, cm)
  local adds = e.adds
  adds[#adds + 1] = '+inf'
  adds[#adds + 1] = member
  e.pend[leaseId] = #adds
  rollover(e, day, month)
  put(e, 'wn', wn + 1); put(e, 'wt', wt + est); put(e, 'f', (num(e, 'f') or 0) + 1)
  put(e, rF, r + 1); put(e, tF, t + est); put(e, cF, cm + estCost)
end

local function reserve(A, b, last)
  reserveArgs, reserveBase = A, b
  now = tonumber(A[b + 1])
  windowMs = tonumber(A[b + 2])
  cutoff = now - windowMs
  staleEdge = cutoff - windowMs / 4
  est = tonumber(A[b + 3])
  estCost = tonumber(A[b + 4])
  day, month = A[b + 5], A[b + 6]
  local model = A[b + 10]
  leaseId = A[b + 11]
  local isCooldownHard = A[b + 13] ~= '1'
  rF, tF, cF = 'r:' .. day, 't:' .. day, 'c:' .. month
  -- The HMGET list ends at the first nil, so no model means no bm: field.
  local bmF = model ~= '' and 'bm:' .. model or nil
  local best = nil
  local out = nil
  local n = 0
  local o = b + 14
  while o <= last do
    n = n + 1
    local arg, group = A[o], nil
    -- A candidate with shared limits: its group's argument comes first, marked with U+001E.
    if string.byte(arg) == 30 then group, o = arg, o + 1; arg = A[o] end
    o = o + 1
    local rpmS, tpmS, rpdS, tpdS, budgetS, id = string.match(arg, limitsPattern)
    local e = keyOf(id)
    load(e, {'invalidSince', 'exhaustedUntil', 'coolingUntil', 'breaker', 'breakerOpenUntil',
      'probeLeaseId', 'wn', 'wt', 'wo', 'f', 'd', 'm', rF, tF, cF, bmF})
    local reason, at = nil, nil
    local isProbe = false
    if get(e, 'invalidSince') then reason = 'invalid'
    else
      local ex, co = num(e, 'exhaustedUntil'), num(e, 'coolingUntil')
      local bm = bmF and num(e, bmF) or nil
      local breaker = get(e, 'breaker')
      if ex and ex > now then reason, at = 'exhausted', ex
      elseif co and co > now and isCooldownHard then reason, at = 'cooling', co
      elseif bm and bm > now then reason, at = 'model-blocked', bm
      elseif breaker == 'open' or breaker == 'half-open' then
        local openUntil = num(e, 'breakerOpenUntil')
        local probe = get(e, 'probeLeaseId')
        if breaker == 'open' and openUntil and openUntil > now and isCooldownHard then
          reason, at = 'breaker-open', openUntil
        elseif probe then
          reason = 'probe-in-flight'
          at = expiryAdds[probe] or tonumber(redis.call('ZSCORE', base .. ':lexp', probe))
        else isProbe = true end
      end
    end
    if not reason then
      local wn, wt, r, t, cm
      reason, at, wn, wt, r, t, cm = overLimit(e, rpmS, tpmS, rpdS, tpdS, budgetS)
      -- The group's limits count only once the key's own pass: a refusal names the key's reason first.
      local g, gid, gwn, gwt, gr, gt, gcm
      if not reason and group then
        local grpmS, gtpmS, grpdS, gtpdS, gbudgetS
        grpmS, gtpmS, grpdS, gtpdS, gbudgetS, gid = string.match(group, limitsPattern, 2)
        g = keyOf(gid)
        load(g, {'wn', 'wt', 'wo', 'f', 'd', 'm', rF, tF, cF})
        reason, at, gwn, gwt, gr, gt, gcm = overLimit(g, grpmS, gtpmS, grpdS, gtpdS, gbudgetS)
      end
      if not reason then
        local member = leaseId .. '|' .. A[b + 3]
        charge(e, member, wn, wt, r, t, cm)
        if isProbe then put(e, 'breaker', 'half-open'); put(e, 'probeLeaseId', leaseId) end
        if g then
          charge(g, member, gwn, gwt, gr, gt, gcm)
          newLeases[leaseId] = (isProbe and 'a3\\031' or 'a2\\031') .. A[b + 12] .. #gid .. '\\031' .. gid .. id
        else
          newLeases[leaseId] = (isProbe and 'a1\\031' or 'a0\\031') .. A[b + 12] .. id
        end
        leaseOrder[#leaseOrder + 1] = leaseId
        expiryAdds[leaseId] = tonumber(A[b + 9])
        return n * 2 + (isProbe and 1 or 0)
      end
    end
    if at and (best == nil or at < best) then best = at end
    out = out or {0, 0, 0}
    out[#out + 1] = id
    out[#out + 1] = reason
  end
  out = out or {0, 0, 0}
  if best then out[2] = 1; out[3] = tostring(best - now) end
  return out
end

-- Ends lease id's reservation on e (its key or its group) at stamp: the window entry becomes
-- member, and when reported in time (tokensS, the tokens as sent) the window, day and month
-- move from the estimate to the actual tokens and cost; one in flight less.
local function release(e, id, est, stamp, member, tokensS, tokens, estN, cost, estCostN, tF, cF)
  load(e, {'wt', 'wo', 'f', 'probeLeaseId', tF, cF})
  local i = e.pend[id]
  local present
  if tokensS then
    if i then
      e.adds[i - 1], e.adds[i] = stamp, member
      present = true
    elseif tokensS == est then
      present = redis.call('ZADD', e.w, 'XX', 'CH', stamp, member) == 1
    elseif redis.call('ZREM', e.w, id .. '|' .. est) == 1 then
      e.adds[#e.adds + 1] = stamp
      e.adds[#e.adds + 1] = member
      present = true
    end
    if present and tokens ~= estN then put(e, 'wt', (num(e, 'wt') or 0) + tokens - estN) end
    -- Only what still exists moves: a reset or rolled-over day stays gone.
    local td, cm = num(e, tF), num(e, cF)
    if td then put(e, tF, td + tokens - estN) end
    if cm then put(e, cF, cm + cost - estCostN) end
  elseif i then
    e.adds[i - 1] = stamp
    present = true
  else
    present = redis.call('ZADD', e.w, 'XX', 'CH', stamp, member) == 1
  end
  if present then
    local wo = num(e, 'wo')
    if not wo or stamp < wo then put(e, 'wo', stamp) end
  end
  local f = num(e, 'f')
  if f then put(e, 'f', math.max(0, f - 1)) end
end

local function settle(A, b)
  local id = A[b + 1]
  local rec = newLeases[id]
  local isNew = rec ~= nil
  if isNew then newLeases[id] = false else rec = redis.call('GETDEL', base .. ':l:' .. id) end
  if not rec then return 0 end
  local st, flags, est, cost, at, exp, day, month, keyId = parseLease(rec)
  local status = 2
  if st == 'a' then
    if isNew then expiryAdds[id] = nil else expiryRemoves[#expiryRemoves + 1] = id end
    local sharedId
    if flags == '2' or flags == '3' then sharedId, keyId = splitShared(keyId) end
    local now, expN = tonumber(A[b + 4]), tonumber(exp)
    local stamp, member, tokensS, tokens, estN, actualCost, estCostN
    if expN > now then
      status = 1
      -- The upstream had the request by the time it responded: the entry counts from there.
      stamp = math.min(now, math.max(tonumber(at), tonumber(A[b + 8]) or now))
      tokensS = A[b + 2]
      member = id .. '|' .. tokensS
      tokens, estN, actualCost, estCostN = tonumber(tokensS), tonumber(est), tonumber(A[b + 3]), tonumber(cost)
    else
      -- Expired before its report: it keeps the estimate and is stamped at expiresAt.
      stamp = expN
      member = id .. '|' .. est
    end
    local tF, cF = 't:' .. day, 'c:' .. month
    local e = keyOf(keyId)
    release(e, id, est, stamp, member, tokensS, tokens, estN, actualCost, estCostN, tF, cF)
    if (flags == '1' or flags == '3') and get(e, 'probeLeaseId') == id then put(e, 'probeLeaseId', nil) end
    if sharedId then
      release(keyOf(sharedId), id, est, stamp, member, tokensS, tokens, estN, actualCost, estCostN, tF, cF)
    end
  end
  if A[b + 7] ~= '' then
    usage[#usage + 1] = A[b + 6]
    usage[#usage + 1] = A[b + 7]
  end
  if A[b + 5] == '1' then return status end
  return {status, rec}
end

local replies = {}
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  if ARGV[i] == 'r' then replies[#replies + 1] = reserve(ARGV, i + 1, i + 1 + n)
  else replies[#replies + 1] = settle(ARGV, i + 1) end
  i = i + 2 + n
end

-- Write back, one call per structure.
for _, e in ipairs(order) do
  flushWindow(e)
  local set, del = {}, {}
  for f in pairs(e.dirty) do
    local x = e.v[f]
    if x then set[#set + 1] = f; set[#set + 1] = x else del[#del + 1] = f end
  end
  if #set > 0 then redis.call('HSET', e.key, unpack(set)) end
  if #del > 0 then redis.call('HDEL', e.key, unpack(del)) end
end
local leases, expiries = {}, {}
for _, id in ipairs(leaseOrder) do
  local rec = newLeases[id]
  if rec then
    leases[#leases + 1] = base .. ':l:' .. id
    leases[#leases + 1] = rec
    expiries[#expiries + 1] = expiryAdds[id]
    expiries[#expiries + 1] = id
  end
end
if #leases > 0 then redis.call('MSET', unpack(leases)) end
if #expiries > 0 then redis.call('ZADD', base .. ':lexp', unpack(expiries)) end
if #expiryRemoves > 0 then redis.call('ZREM', base .. ':lexp', unpack(expiryRemoves)) end
if #usage > 0 then redis.call('ZADD', base .. ':usage', unpack(usage)) end
return replies
`;

/** ARGV: now, keepSweptMs. Ends every lease due; returns {id1, leaseString1, ...}. */
const expire = `${leaseCommon}
-- Unreported: the entry on owner (the lease's key or group) keeps the estimate and is stamped
-- at expiresAt; one in flight less, and the key's probe slot frees when the lease held it.
local function release(owner, id, est, exp, isProbe)
  local kKey = base .. ':k:' .. owner
  local c = redis.call('HMGET', kKey, 'f', 'probeLeaseId', 'wo')
  local set = {}
  if c[1] then set[#set + 1] = 'f'; set[#set + 1] = math.max(0, tonumber(c[1]) - 1) end
  if redis.call('ZADD', base .. ':w:' .. owner, 'XX', 'CH', exp, id .. '|' .. est) == 1 then
    local wo = tonumber(c[3])
    if not wo or tonumber(exp) < wo then set[#set + 1] = 'wo'; set[#set + 1] = exp end
  end
  if #set > 0 then redis.call('HSET', kKey, unpack(set)) end
  if isProbe and c[2] == id then redis.call('HDEL', kKey, 'probeLeaseId') end
end
local ids = redis.call('ZRANGEBYSCORE', base .. ':lexp', '-inf', ARGV[1])
local out = {}
for i, id in ipairs(ids) do
  local lKey = base .. ':l:' .. id
  local rec = redis.call('GET', lKey)
  if rec and string.sub(rec, 1, 1) == 'a' then
    local _, flags, est, _, _, exp, _, _, keyId = parseLease(rec)
    local sharedId
    if flags == '2' or flags == '3' then sharedId, keyId = splitShared(keyId) end
    release(keyId, id, est, exp, flags == '1' or flags == '3')
    if sharedId then release(sharedId, id, est, exp, false) end
    rec = 'x' .. string.sub(rec, 2)
    redis.call('SET', lKey, rec, 'PX', ARGV[2])
    out[#out + 1] = id
    out[#out + 1] = rec
  end
end
for j = 1, #ids, 1000 do
  redis.call('ZREM', base .. ':lexp', unpack(ids, j, math.min(j + 999, #ids)))
end
return out
`;

/**
 * ARGV: keyId, now, resetFailures, incrementFailures, nSet, field/value pairs,
 * then fields to clear ('blockedModels' clears every bm:* field). Returns HGETALL.
 */
const updateState = `
local stKey = KEYS[1] .. ':k:' .. ARGV[1]
if ARGV[3] == '1' then redis.call('HDEL', stKey, 'consecutiveFailures') end
if ARGV[4] == '1' then redis.call('HINCRBY', stKey, 'consecutiveFailures', 1) end
local nSet = tonumber(ARGV[5])
if nSet > 0 then redis.call('HSET', stKey, unpack(ARGV, 6, 5 + nSet * 2)) end
for i = 6 + nSet * 2, #ARGV do
  if ARGV[i] == 'blockedModels' then
    local drop = {}
    for _, f in ipairs(redis.call('HKEYS', stKey)) do
      if string.sub(f, 1, 3) == 'bm:' then drop[#drop + 1] = f end
    end
    if #drop > 0 then redis.call('HDEL', stKey, unpack(drop)) end
  else
    redis.call('HDEL', stKey, ARGV[i])
  end
end
redis.call('HSET', stKey, 'updatedAt', ARGV[2])
return redis.call('HGETALL', stKey)
`;

/**
 * ARGV: keyId, counters ('1' also clears stamped window entries and calendar counters, keeping
 * what is in flight), now.
 * The key hash holds state and counters: drop the state fields (and the counters when asked).
 */
const resetState = `
local id = ARGV[1]
local kKey = KEYS[1] .. ':k:' .. ARGV[1]
local counter = {wn = true, wt = true, wo = true, f = true, d = true, m = true}
local drop = {}
for _, f in ipairs(redis.call('HKEYS', kKey)) do
  local p = string.sub(f, 1, 2)
  local isCounter = counter[f] or p == 'r:' or p == 't:' or p == 'c:'
  if (not isCounter) or (ARGV[2] == '1' and f ~= 'f') then drop[#drop + 1] = f end
end
for j = 1, #drop, 1000 do redis.call('HDEL', kKey, unpack(drop, j, math.min(j + 999, #drop))) end
local set = {'updatedAt', ARGV[3]}
if ARGV[2] == '1' then
  -- Stamped entries go; entries in flight are live requests and keep counting.
  local wKey = KEYS[1] .. ':w:' .. id
  redis.call('ZREMRANGEBYSCORE', wKey, '-inf', '(inf')
  local live = redis.call('ZRANGE', wKey, 0, -1)
  local wt = 0
  for _, m in ipairs(live) do wt = wt + (tonumber(string.match(m, '|([^|]*)$')) or 0) end
  set[3], set[4], set[5], set[6] = 'wn', #live, 'wt', wt
end
redis.call('HSET', kKey, unpack(set))
return 1
`;

/**
 * ARGV: cutoff, day, month, keyIds... Returns per key: requestsInWindow,
 * tokensInWindow, requestsToday, tokensToday, costThisMonth, inFlight (strings).
 * Read-only: entries past the window that no reserve trimmed yet are subtracted here.
 */
const snapshot = `
local base = KEYS[1]
local cutoff = tonumber(ARGV[1])
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local c = redis.call('HMGET', base .. ':k:' .. id, 'wn', 'wt', 'r:' .. ARGV[2], 't:' .. ARGV[2], 'c:' .. ARGV[3], 'f', 'wo')
  local count, total = tonumber(c[1]) or 0, tonumber(c[2]) or 0
  local wo = tonumber(c[7])
  if wo and wo <= cutoff then
    local old = redis.call('ZRANGEBYSCORE', base .. ':w:' .. id, '-inf', cutoff)
    count = count - #old
    for j = 1, #old do total = total - (tonumber(string.match(old[j], '|([^|]*)$')) or 0) end
  end
  out[#out + 1] = tostring(math.max(count, 0))
  out[#out + 1] = tostring(total)
  out[#out + 1] = c[3] or '0'
  out[#out + 1] = c[4] or '0'
  out[#out + 1] = c[5] or '0'
  out[#out + 1] = c[6] or '0'
end
return out
`;

/** ARGV: id, fingerprint, json, channel. Error reply KEYPOOL_DUPLICATE_KEY on a fingerprint clash. */
const putKey = `
local base = KEYS[1]
local owner = redis.call('HGET', base .. ':fp', ARGV[2])
if owner and owner ~= ARGV[1] then return redis.error_reply('KEYPOOL_DUPLICATE_KEY') end
local old = redis.call('HGET', base .. ':keys', ARGV[1])
if old then
  local oldFp = cjson.decode(old).fingerprint
  if oldFp ~= ARGV[2] then redis.call('HDEL', base .. ':fp', oldFp) end
end
redis.call('HSET', base .. ':keys', ARGV[1], ARGV[3])
redis.call('HSET', base .. ':fp', ARGV[2], ARGV[1])
local v = redis.call('INCR', base .. ':ver')
redis.call('PUBLISH', ARGV[4], v)
return v
`;

/** ARGV: id, channel. Drops the record, its index entry and its hot state. Returns 1 or 0. */
const deleteKey = `
local base, id = KEYS[1], ARGV[1]
redis.call('DEL', base .. ':k:' .. id, base .. ':w:' .. id, base .. ':pc:' .. id)
local json = redis.call('HGET', base .. ':keys', id)
local found = 0
if json then
  found = 1
  local fp = cjson.decode(json).fingerprint
  if redis.call('HGET', base .. ':fp', fp) == id then redis.call('HDEL', base .. ':fp', fp) end
  redis.call('HDEL', base .. ':keys', id)
end
local v = redis.call('INCR', base .. ':ver')
redis.call('PUBLISH', ARGV[2], v)
return found
`;

/**
 * ARGV: keyId, now, until, keepMs. Claims the key's probe slot unless a claim holds it past
 * `now`. The held-until time decides (callers pass their clock, as everywhere); the key's own
 * expiry (keepMs, well past until) only cleans up. Returns 1 (claimed) or 0.
 */
const claimProbe = `
local k = KEYS[1] .. ':pc:' .. ARGV[1]
local held = tonumber(redis.call('GET', k))
if held and held > tonumber(ARGV[2]) then return 0 end
redis.call('SET', k, ARGV[3], 'PX', ARGV[4])
return 1
`;

/** ARGV: id, tokenHash ('' when deleting), json. Keeps the hash -> id index in step. Returns 1 or 0. */
const putToken = `
local base = KEYS[1]
local old = redis.call('HGET', base .. ':tokens', ARGV[1])
if old then
  local oldHash = cjson.decode(old).tokenHash
  if oldHash ~= ARGV[2] and redis.call('HGET', base .. ':tokenidx', oldHash) == ARGV[1] then
    redis.call('HDEL', base .. ':tokenidx', oldHash)
  end
end
if ARGV[2] == '' then
  redis.call('HDEL', base .. ':tokens', ARGV[1])
  redis.call('HDEL', base .. ':tokenused', ARGV[1])
else
  redis.call('HSET', base .. ':tokens', ARGV[1], ARGV[3])
  redis.call('HSET', base .. ':tokenidx', ARGV[2], ARGV[1])
end
return old and 1 or 0
`;

/**
 * ARGV: id, lastUsedAt. Kept beside the token's JSON (in :tokenused), so a touch never rewrites
 * the record; only for a token that exists, and only forward.
 */
const touchToken = `
local base = KEYS[1]
if redis.call('HEXISTS', base .. ':tokens', ARGV[1]) == 0 then return 0 end
local at = tonumber(ARGV[2])
local old = tonumber(redis.call('HGET', base .. ':tokenused', ARGV[1]) or '')
if old ~= nil and old >= at then return 0 end
redis.call('HSET', base .. ':tokenused', ARGV[1], ARGV[2])
return 1
`;

/** ARGV: time, json. Members sort by a zero-padded sequence so equal times keep insertion order. */
const appendAudit = `
local seq = redis.call('INCR', KEYS[1] .. ':auditseq')
redis.call('ZADD', KEYS[1] .. ':audit', ARGV[1], string.format('%016d', seq) .. ARGV[2])
return seq
`;

export const auditSeqWidth = 16;

const scripts = {
  keypoolHot: hot,
  keypoolExpire: expire,
  keypoolUpdateState: updateState,
  keypoolResetState: resetState,
  keypoolSnapshot: snapshot,
  keypoolPutKey: putKey,
  keypoolDeleteKey: deleteKey,
  keypoolPutToken: putToken,
  keypoolTouchToken: touchToken,
  keypoolAppendAudit: appendAudit,
  keypoolClaimProbe: claimProbe,
} as const;

type ScriptName = keyof typeof scripts;
type Arg = string | number;

/** A client with our scripts defined (EVALSHA, falling back to EVAL once per connection). */
export type ScriptedClient = (Redis | Cluster) & {
  [K in ScriptName]: (base: string, ...args: Arg[]) => Promise<unknown>;
};

/** Registers the scripts on a client; idempotent (the same source gives the same SHA). */
export function defineScripts(client: Redis | Cluster): ScriptedClient {
  const scripted = client as ScriptedClient;
  for (const [name, lua] of Object.entries(scripts)) {
    if (typeof (scripted as unknown as Record<string, unknown>)[name] !== 'function') {
      client.defineCommand(name, { numberOfKeys: 1, lua });
    }
  }
  return scripted;
}
