import type { Cluster, Redis } from 'ioredis';

/**
 * Lua for the hot path and for the few durable writes that must be atomic.
 * Every script gets KEYS[1] = the store's hash tag `{prefix}` and derives the
 * rest of its key names from it, so all keys of one store live in one Cluster
 * slot. Layout (B = `{prefix}`):
 *
 *   B:st:<key>     hash   key state (bm:<model> = blocked-until per model)
 *   B:w:<key>      zset   sliding window: lease id -> reservedAt
 *   B:wt:<key>     hash   sliding window: lease id -> tokens
 *   B:c:<key>      hash   wn/wt = window count/tokens, f = in flight, d/m = current day/month,
 *                         r:<day>, t:<day>, c:<month> (current and previous day/month);
 *                         expires two days after the month of its last rollover ends
 *   B:leases       hash   lease id -> lease JSON (active leases)
 *   B:lexp         zset   lease id -> expiresAt
 *   B:xl:<lease>   string swept lease waiting for its late report (expires on its own)
 *
 * The hot scripts read a key's counters with one HMGET and write them back with
 * one HSET (the script is atomic, so read-modify-write is safe): fewer calls per
 * script is most of the cost.
 */

const common = `
local base = KEYS[1]
-- Ends a lease (reservation kept as it stands); frees the probe slot if it held it.
local function endLease(id, l)
  redis.call('HDEL', base .. ':leases', id)
  redis.call('ZREM', base .. ':lexp', id)
  local cKey = base .. ':c:' .. l.keyId
  if redis.call('HEXISTS', cKey, 'f') == 1 then redis.call('HINCRBY', cKey, 'f', -1) end
  if l.isProbe then
    local stKey = base .. ':st:' .. l.keyId
    if redis.call('HGET', stKey, 'probeLeaseId') == id then redis.call('HDEL', stKey, 'probeLeaseId') end
  end
end
-- Drops entries that left the window (chunked: unpack has a stack limit).
local function trim(wKey, tKey, cKey, cutoff)
  while true do
    local old = redis.call('ZRANGEBYSCORE', wKey, '-inf', cutoff, 'LIMIT', 0, 500)
    if #old == 0 then return end
    local toks = redis.call('HMGET', tKey, unpack(old))
    local sum = 0
    for j = 1, #toks do sum = sum + (tonumber(toks[j]) or 0) end
    redis.call('HDEL', tKey, unpack(old))
    redis.call('ZREM', wKey, unpack(old))
    local c = redis.call('HMGET', cKey, 'wn', 'wt')
    redis.call('HSET', cKey, 'wn', math.max(0, (tonumber(c[1]) or 0) - #old), 'wt', (tonumber(c[2]) or 0) - sum)
    if #old < 500 then return end
  end
end
`;

/**
 * ARGV: now, windowMs, estTokens, estCost, day, month, dayEndsAt, monthEndsAt,
 * expiresAt, model ('' = none), leaseId, leaseJsonTail, countersTtlMs, then per
 * candidate: keyId, rpm, tpm, requestsPerDay, tokensPerDay, monthlyBudgetUsd ('' = no limit).
 * Returns {1, leaseJson} or {0, hasRetry, retryAfterMs, id1, reason1, ...}.
 */
const reserve = `${common}
local now = tonumber(ARGV[1])
local windowMs = tonumber(ARGV[2])
local cutoff = now - windowMs
local est = tonumber(ARGV[3])
local estCost = tonumber(ARGV[4])
local day, month = ARGV[5], ARGV[6]
local dayEndsAt, monthEndsAt = tonumber(ARGV[7]), tonumber(ARGV[8])
local model = ARGV[10]
local leaseId = ARGV[11]
local rKey, tdKey, cmKey = 'r:' .. day, 't:' .. day, 'c:' .. month
local best = nil
local out = {0, 0, 0}
local function retry(at) if at and (best == nil or at < best) then best = at end end
local function oldest(wKey)
  local o = redis.call('ZRANGE', wKey, 0, 0, 'WITHSCORES')
  if o[2] then retry(tonumber(o[2]) + windowMs) end
end
for o = 14, #ARGV, 6 do
  local id = ARGV[o]
  local stKey = base .. ':st:' .. id
  local s = redis.call('HMGET', stKey, 'invalidSince', 'exhaustedUntil', 'coolingUntil', 'breaker',
    'breakerOpenUntil', 'probeLeaseId', 'bm:' .. model)
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
    local wKey, tKey, cKey = base .. ':w:' .. id, base .. ':wt:' .. id, base .. ':c:' .. id
    trim(wKey, tKey, cKey, cutoff)
    local c = redis.call('HMGET', cKey, 'wn', 'wt', rKey, tdKey, cmKey, 'f', 'd', 'm')
    local wn, wt = tonumber(c[1]) or 0, tonumber(c[2]) or 0
    local r, t, cm = tonumber(c[3]) or 0, tonumber(c[4]) or 0, tonumber(c[5]) or 0
    local rpm, tpm = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
    local rpd, tpd, budget = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5])
    if rpm and wn + 1 > rpm then reason = 'rpm'; oldest(wKey)
    elseif tpm and wt + est > tpm then
      reason = 'tpm'
      if est <= tpm then oldest(wKey) end
    elseif rpd and r + 1 > rpd then reason = 'requests-per-day'; retry(dayEndsAt)
    elseif tpd and t + est > tpd then reason = 'tokens-per-day'; retry(dayEndsAt)
    elseif budget and cm + estCost > budget then reason = 'monthly-budget'; retry(monthEndsAt)
    end
    if not reason then
      redis.call('ZADD', wKey, now, leaseId)
      redis.call('HSET', tKey, leaseId, ARGV[3])
      -- Calendar rollover, only forward (a process with a lagging clock cannot wipe today).
      -- The previous day/month stay readable for late settles and reports; older ones go.
      local newDay, newMonth = (not c[7]) or day > c[7], (not c[8]) or month > c[8]
      if newDay or newMonth then
        if c[7] or c[8] then
          local drop = {}
          for _, f in ipairs(redis.call('HKEYS', cKey)) do
            local p, v = string.sub(f, 1, 2), string.sub(f, 3)
            if (newDay and c[7] and (p == 'r:' or p == 't:') and v < c[7])
              or (newMonth and c[8] and p == 'c:' and v < c[8]) then drop[#drop + 1] = f end
          end
          if #drop > 0 then redis.call('HDEL', cKey, unpack(drop)) end
        end
        if newDay then redis.call('HSET', cKey, 'd', day) end
        if newMonth then redis.call('HSET', cKey, 'm', month) end
        redis.call('PEXPIRE', cKey, ARGV[13])
      end
      redis.call('HSET', cKey, 'wn', wn + 1, 'wt', wt + est, rKey, r + 1, tdKey, t + est, cmKey, cm + estCost,
        'f', (tonumber(c[6]) or 0) + 1)
      local json = '{"keyId":' .. cjson.encode(id) .. ',"isProbe":' .. (isProbe and 'true' or 'false') .. ',' .. ARGV[12]
      redis.call('HSET', base .. ':leases', leaseId, json)
      redis.call('ZADD', base .. ':lexp', ARGV[9], leaseId)
      if isProbe then redis.call('HSET', stKey, 'breaker', 'half-open', 'probeLeaseId', leaseId) end
      return {1, json}
    end
  end
  out[#out + 1] = id
  out[#out + 1] = reason
end
if best then out[2] = 1; out[3] = tostring(best - now) end
return out
`;

/** ARGV: leaseId, tokens, costUsd, now. Returns {status, leaseJson?}. */
const settle = `${common}
local id = ARGV[1]
local json = redis.call('HGET', base .. ':leases', id)
if not json then
  local xKey = base .. ':xl:' .. id
  local x = redis.call('GET', xKey)
  if x then redis.call('DEL', xKey); return {'expired', x} end
  return {'already-settled'}
end
local l = cjson.decode(json)
if l.expiresAt <= tonumber(ARGV[4]) then
  endLease(id, l)
  return {'expired', json}
end
redis.call('HDEL', base .. ':leases', id)
redis.call('ZREM', base .. ':lexp', id)
local tokens = tonumber(ARGV[2])
local tKey, cKey = base .. ':wt:' .. l.keyId, base .. ':c:' .. l.keyId
local tdKey, cmKey = 't:' .. l.day, 'c:' .. l.month
local old = tonumber(redis.call('HGET', tKey, id))
local c = redis.call('HMGET', cKey, 'wt', tdKey, cmKey, 'f')
-- Only counters that still exist move: a trimmed entry or a reset/rolled-over day stays gone.
local set = {}
if old then
  redis.call('HSET', tKey, id, ARGV[2])
  set[#set + 1] = 'wt'; set[#set + 1] = (tonumber(c[1]) or 0) + tokens - old
end
if c[2] then set[#set + 1] = tdKey; set[#set + 1] = tonumber(c[2]) + tokens - l.estimatedTokens end
if c[3] then set[#set + 1] = cmKey; set[#set + 1] = tonumber(c[3]) + tonumber(ARGV[3]) - l.estimatedCostUsd end
if c[4] then set[#set + 1] = 'f'; set[#set + 1] = math.max(0, tonumber(c[4]) - 1) end
if #set > 0 then redis.call('HSET', cKey, unpack(set)) end
if l.isProbe then
  local stKey = base .. ':st:' .. l.keyId
  if redis.call('HGET', stKey, 'probeLeaseId') == id then redis.call('HDEL', stKey, 'probeLeaseId') end
end
return {'settled', json}
`;

/** ARGV: now, keepSweptMs. Returns the swept leases' JSON. */
const expire = `${common}
local ids = redis.call('ZRANGEBYSCORE', base .. ':lexp', '-inf', ARGV[1])
local out = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', base .. ':leases', id)
  if json then
    endLease(id, cjson.decode(json))
    redis.call('SET', base .. ':xl:' .. id, json, 'PX', ARGV[2])
    out[#out + 1] = json
  else
    redis.call('ZREM', base .. ':lexp', id)
  end
end
return out
`;

/**
 * ARGV: keyId, now, resetFailures, incrementFailures, nSet, field/value pairs,
 * then fields to clear ('blockedModels' clears every bm:* field). Returns HGETALL.
 */
const updateState = `
local stKey = KEYS[1] .. ':st:' .. ARGV[1]
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

/** ARGV: keyId, counters ('1' also clears window and calendar counters, keeping in-flight), now. */
const resetState = `
local id = ARGV[1]
redis.call('DEL', KEYS[1] .. ':st:' .. id)
redis.call('HSET', KEYS[1] .. ':st:' .. id, 'updatedAt', ARGV[3])
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1] .. ':w:' .. id, KEYS[1] .. ':wt:' .. id)
  local cKey = KEYS[1] .. ':c:' .. id
  local f = redis.call('HGET', cKey, 'f')
  redis.call('DEL', cKey)
  if f then redis.call('HSET', cKey, 'f', f) end
end
return 1
`;

/**
 * ARGV: cutoff, day, month, keyIds... Returns per key: requestsInWindow,
 * tokensInWindow, requestsToday, tokensToday, costThisMonth, inFlight (strings).
 * Read-only: entries older than the window that no reserve trimmed yet are subtracted here.
 */
const snapshot = `
local base = KEYS[1]
local cutoff = ARGV[1]
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local wKey, tKey = base .. ':w:' .. id, base .. ':wt:' .. id
  local c = redis.call('HMGET', base .. ':c:' .. id, 'wn', 'wt', 'r:' .. ARGV[2], 't:' .. ARGV[2], 'c:' .. ARGV[3], 'f')
  local count, total = tonumber(c[1]) or 0, tonumber(c[2]) or 0
  local old = redis.call('ZRANGEBYSCORE', wKey, '-inf', cutoff)
  count = count - #old
  for j = 1, #old, 500 do
    local toks = redis.call('HMGET', tKey, unpack(old, j, math.min(j + 499, #old)))
    for k = 1, #toks do total = total - (tonumber(toks[k]) or 0) end
  end
  out[#out + 1] = tostring(count)
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
redis.call('DEL', base .. ':st:' .. id, base .. ':w:' .. id, base .. ':wt:' .. id, base .. ':c:' .. id)
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
