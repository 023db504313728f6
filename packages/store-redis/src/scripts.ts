import type { Cluster, Redis } from 'ioredis';

/**
 * Lua for the hot path and for the few durable writes that must be atomic.
 * Every script gets KEYS[1] = the store's hash tag `{prefix}` and derives the
 * rest of its key names from it, so all keys of one store live in one Cluster
 * slot. Layout (B = `{prefix}`):
 *
 *   B:k:<key>      hash   everything hot about a key in one place, read with one HMGET:
 *                         state fields (coolingUntil, breaker, …, bm:<model> = blocked-until),
 *                         wn/wt = window count/tokens, wo = oldest reservedAt in the window,
 *                         f = in flight, d/m = current day/month, r:<day>, t:<day>, c:<month>
 *   B:w:<key>      zset   sliding window: "<leaseId>|<tokens>" -> reservedAt
 *   B:l:<lease>    string a lease, compact (see leaseRecord): 'a…' active, 'x…' swept and
 *                         waiting for its late report (expires on its own); GETDEL ends it
 *   B:lexp         zset   active lease id -> expiresAt
 *   B:usage        zset   usage records (whole JSON, so a replayed write is a no-op) by time
 *
 * Cost is mostly the number of redis.call per script: a reserve makes 5, a settle 7
 * (5 when the actual tokens equal the estimate). The window is trimmed only when a
 * limit check with the untrimmed counts fails (those counts can only be higher, so a
 * pass is exact) or when entries a quarter window past the edge pile up.
 */

const hotCommon = `
local base = KEYS[1]
-- Drops window entries with reservedAt <= cutoff (chunked: unpack has a stack limit)
-- and writes the key's exact window count, tokens and oldest entry back.
local function trim(kKey, wKey, cutoff, wn, wt)
  while true do
    local old = redis.call('ZRANGEBYSCORE', wKey, '-inf', cutoff, 'LIMIT', 0, 1000)
    if #old == 0 then break end
    for j = 1, #old do wt = wt - (tonumber(string.match(old[j], '|([^|]*)$')) or 0) end
    wn = wn - #old
    redis.call('ZREMRANGEBYRANK', wKey, 0, #old - 1)
    if #old < 1000 then break end
  end
  local first = redis.call('ZRANGE', wKey, 0, 0, 'WITHSCORES')
  local wo = tonumber(first[2])
  if wo then
    redis.call('HSET', kKey, 'wn', math.max(wn, 0), 'wt', wt, 'wo', first[2])
  else
    wn, wt = 0, 0
    redis.call('HSET', kKey, 'wn', 0, 'wt', 0)
    redis.call('HDEL', kKey, 'wo')
  end
  return math.max(wn, 0), wt, wo
end
-- A lease string: status ('a' active / 'x' swept), probe flag, then
-- est, estCost, reservedAt, expiresAt, day, month, tail JSON, keyId (last: it may hold anything).
local function parseLease(rec)
  return string.match(rec, '^(.)(.)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31([^\\31]*)\\31[^\\31]*\\31(.*)$')
end
`;

/**
 * ARGV: now, windowMs, estTokens, estCost, day, month, dayEndsAt, monthEndsAt,
 * expiresAt, model ('' = none), leaseId, lease middle ("est␟cost␟now␟expiresAt␟day␟month␟tail␟"),
 * then per candidate: keyId, rpm, tpm, requestsPerDay, tokensPerDay, monthlyBudgetUsd ('' = no limit).
 * Returns an integer on success: candidate index * 2 + isProbe (the caller builds the lease
 * itself), or {0, hasRetry, retryAfterMs, id1, reason1, ...}.
 */
const reserve = `${hotCommon}
local now = tonumber(ARGV[1])
local windowMs = tonumber(ARGV[2])
local cutoff = now - windowMs
local staleEdge = cutoff - windowMs / 4
local est = tonumber(ARGV[3])
local estCost = tonumber(ARGV[4])
local day, month = ARGV[5], ARGV[6]
local model = ARGV[10]
local leaseId = ARGV[11]
local rF, tF, cF = 'r:' .. day, 't:' .. day, 'c:' .. month
local best = nil
local out = {0, 0, 0}
local function retry(at) if at and (best == nil or at < best) then best = at end end
local n = 0
for o = 13, #ARGV, 6 do
  n = n + 1
  local id = ARGV[o]
  local kKey = base .. ':k:' .. id
  local s = redis.call('HMGET', kKey, 'invalidSince', 'exhaustedUntil', 'coolingUntil', 'breaker',
    'breakerOpenUntil', 'probeLeaseId', 'bm:' .. model, 'wn', 'wt', 'wo', rF, tF, cF, 'f', 'd', 'm')
  local reason = nil
  local isProbe = false
  if s[1] then reason = 'invalid'
  else
    local ex, co, bm = tonumber(s[2]), tonumber(s[3]), tonumber(s[7])
    if ex and ex > now then reason = 'exhausted'; retry(ex)
    elseif co and co > now then reason = 'cooling'; retry(co)
    elseif model ~= '' and bm and bm > now then reason = 'model-blocked'; retry(bm)
    elseif s[4] == 'open' or s[4] == 'half-open' then
      local openUntil = tonumber(s[5])
      if s[4] == 'open' and openUntil and openUntil > now then reason = 'breaker-open'; retry(openUntil)
      elseif s[6] then reason = 'probe-in-flight'; retry(tonumber(redis.call('ZSCORE', base .. ':lexp', s[6])))
      else isProbe = true end
    end
  end
  if not reason then
    local wKey = base .. ':w:' .. id
    local wn, wt, wo = tonumber(s[8]) or 0, tonumber(s[9]) or 0, tonumber(s[10])
    local rpm, tpm = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
    if wo and wo <= cutoff and ((rpm and wn + 1 > rpm) or (tpm and wt + est > tpm) or wo <= staleEdge) then
      wn, wt, wo = trim(kKey, wKey, cutoff, wn, wt)
    end
    local r, t, cm = tonumber(s[11]) or 0, tonumber(s[12]) or 0, tonumber(s[13]) or 0
    local rpd, tpd, budget = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5])
    if rpm and wn + 1 > rpm then reason = 'rpm'; if wo then retry(wo + windowMs) end
    elseif tpm and wt + est > tpm then
      reason = 'tpm'
      if est <= tpm and wo then retry(wo + windowMs) end
    elseif rpd and r + 1 > rpd then reason = 'requests-per-day'; retry(tonumber(ARGV[7]))
    elseif tpd and t + est > tpd then reason = 'tokens-per-day'; retry(tonumber(ARGV[7]))
    elseif budget and cm + estCost > budget then reason = 'monthly-budget'; retry(tonumber(ARGV[8]))
    end
    if not reason then
      redis.call('ZADD', wKey, now, leaseId .. '|' .. ARGV[3])
      local set = {'wn', wn + 1, 'wt', wt + est, rF, r + 1, tF, t + est, cF, cm + estCost,
        'f', (tonumber(s[14]) or 0) + 1}
      if not wo or now < wo then set[#set + 1] = 'wo'; set[#set + 1] = ARGV[1] end
      -- Calendar rollover, only forward (a process with a lagging clock cannot wipe today).
      -- The previous day/month stay readable for late settles and reports; older ones go.
      local newDay, newMonth = (not s[15]) or day > s[15], (not s[16]) or month > s[16]
      if newDay or newMonth then
        if s[15] or s[16] then
          local drop = {}
          for _, f in ipairs(redis.call('HKEYS', kKey)) do
            local p, v = string.sub(f, 1, 2), string.sub(f, 3)
            if (newDay and s[15] and (p == 'r:' or p == 't:') and v < s[15])
              or (newMonth and s[16] and p == 'c:' and v < s[16]) then drop[#drop + 1] = f end
          end
          if #drop > 0 then redis.call('HDEL', kKey, unpack(drop)) end
        end
        if newDay then set[#set + 1] = 'd'; set[#set + 1] = day end
        if newMonth then set[#set + 1] = 'm'; set[#set + 1] = month end
      end
      if isProbe then
        set[#set + 1] = 'breaker'; set[#set + 1] = 'half-open'
        set[#set + 1] = 'probeLeaseId'; set[#set + 1] = leaseId
      end
      redis.call('HSET', kKey, unpack(set))
      redis.call('SET', base .. ':l:' .. leaseId, (isProbe and 'a1\\31' or 'a0\\31') .. ARGV[12] .. id)
      redis.call('ZADD', base .. ':lexp', ARGV[9], leaseId)
      return n * 2 + (isProbe and 1 or 0)
    end
  end
  out[#out + 1] = id
  out[#out + 1] = reason
end
if best then out[2] = 1; out[3] = tostring(best - now) end
return out
`;

/**
 * ARGV: leaseId, tokens, costUsd, now, known ('1': the caller holds the lease record),
 * usage time, usage JSON ('' = none). Returns 0 (already settled), 1 (settled) or 2
 * (expired); as {status, leaseString} when the caller does not know the lease.
 */
const settle = `${hotCommon}
local id = ARGV[1]
local rec = redis.call('GETDEL', base .. ':l:' .. id)
if not rec then return 0 end
local st, probe, est, cost, at, exp, day, month, keyId = parseLease(rec)
local status = 2
if st == 'a' then
  redis.call('ZREM', base .. ':lexp', id)
  local kKey = base .. ':k:' .. keyId
  local c = redis.call('HMGET', kKey, 'wt', 't:' .. day, 'c:' .. month, 'f', 'probeLeaseId')
  local set = {}
  if tonumber(exp) > tonumber(ARGV[4]) then
    status = 1
    -- Only what still exists moves: a trimmed entry or a reset/rolled-over day stays gone.
    local tokens = tonumber(ARGV[2])
    if ARGV[2] ~= est then
      local wKey = base .. ':w:' .. keyId
      if redis.call('ZREM', wKey, id .. '|' .. est) == 1 then
        redis.call('ZADD', wKey, at, id .. '|' .. ARGV[2])
        set[#set + 1] = 'wt'; set[#set + 1] = (tonumber(c[1]) or 0) + tokens - tonumber(est)
      end
    end
    if c[2] then set[#set + 1] = 't:' .. day; set[#set + 1] = tonumber(c[2]) + tokens - tonumber(est) end
    if c[3] then set[#set + 1] = 'c:' .. month; set[#set + 1] = tonumber(c[3]) + tonumber(ARGV[3]) - tonumber(cost) end
  end
  if c[4] then set[#set + 1] = 'f'; set[#set + 1] = math.max(0, tonumber(c[4]) - 1) end
  if #set > 0 then redis.call('HSET', kKey, unpack(set)) end
  if probe == '1' and c[5] == id then redis.call('HDEL', kKey, 'probeLeaseId') end
end
if ARGV[7] ~= '' then redis.call('ZADD', base .. ':usage', ARGV[6], ARGV[7]) end
if ARGV[5] == '1' then return status end
return {status, rec}
`;

/** ARGV: now, keepSweptMs. Ends every lease due; returns {id1, leaseString1, ...}. */
const expire = `${hotCommon}
local ids = redis.call('ZRANGEBYSCORE', base .. ':lexp', '-inf', ARGV[1])
local out = {}
for i, id in ipairs(ids) do
  local lKey = base .. ':l:' .. id
  local rec = redis.call('GET', lKey)
  if rec and string.sub(rec, 1, 1) == 'a' then
    local _, probe, _, _, _, _, _, _, keyId = parseLease(rec)
    local kKey = base .. ':k:' .. keyId
    local c = redis.call('HMGET', kKey, 'f', 'probeLeaseId')
    if c[1] then redis.call('HSET', kKey, 'f', math.max(0, tonumber(c[1]) - 1)) end
    if probe == '1' and c[2] == id then redis.call('HDEL', kKey, 'probeLeaseId') end
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
 * ARGV: keyId, counters ('1' also clears window and calendar counters, keeping in-flight), now.
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
if ARGV[2] == '1' then redis.call('DEL', KEYS[1] .. ':w:' .. id) end
redis.call('HSET', kKey, 'updatedAt', ARGV[3])
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
redis.call('DEL', base .. ':k:' .. id, base .. ':w:' .. id)
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
else
  redis.call('HSET', base .. ':tokens', ARGV[1], ARGV[3])
  redis.call('HSET', base .. ':tokenidx', ARGV[2], ARGV[1])
end
return old and 1 or 0
`;

/** ARGV: time, json. Members sort by a zero-padded sequence so equal times keep insertion order. */
const appendAudit = `
local seq = redis.call('INCR', KEYS[1] .. ':auditseq')
redis.call('ZADD', KEYS[1] .. ':audit', ARGV[1], string.format('%016d', seq) .. ARGV[2])
return seq
`;

export const auditSeqWidth = 16;

const scripts = {
  keypoolReserve: reserve,
  keypoolSettle: settle,
  keypoolExpire: expire,
  keypoolUpdateState: updateState,
  keypoolResetState: resetState,
  keypoolSnapshot: snapshot,
  keypoolPutKey: putKey,
  keypoolDeleteKey: deleteKey,
  keypoolPutToken: putToken,
  keypoolAppendAudit: appendAudit,
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
