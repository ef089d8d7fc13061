// The Lua side of the Redis queue store (redis-store.ts). Every change to a job's record runs as one
// script, so Redis applies it whole while other nodes' commands wait: a limit check and the
// reservation it allows, a terminal status and the webhook row that announces it, never half.
//
// Keys, for a store prefix P (default 'rd') and BullMQ's queue prefix B = 'P:jobs:':
//   P:job:<id>          hash   the job's record: id appId keyId input priority webhookUrl createdAt
//                              status cancel, and once finished startedAt finishedAt attempts result
//                              error files hooks; no TTL while live, then until it expires
//   P:file:<id>:<name>  hash   type, bytes (binary)
//   P:live              set    ids of live (queued or running) jobs, for the limits and counts()
//   P:live:<keyId>      set    the same, per API key
//   P:finished          zset   id -> finishedAt, for expire(now)
//   P:hook:seq          string the last webhook delivery id
//   P:hook:due          zset   delivery id -> when it may next be handed out (due time or lease end)
//   P:hook:<n>          hash   requestId, keyId, url, body, attempts, nextAttemptAt, state, lastError
//   B...                       BullMQ's own keys; the scripts read its active and wait lists, its
//                              prioritized set and job hashes (attempts 'ats', 'processedOn'), and a
//                              queued job's cancel takes it out of the wait list or prioritized set.
//
// A record's `status` is 'queued' for every live job; whether it is running is BullMQ's answer (in
// its active list or not), since BullMQ's stalled check moves a dead node's job back to waiting
// without telling anyone. Terminal statuses are ours alone and final: BullMQ is told afterwards.
//
// Scripts build key names from the two prefixes in ARGV[1] and ARGV[2] (as BullMQ's own scripts do),
// so they need a single Redis (or Sentinel), not a Cluster.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

const PRELUDE = `
local P, B = ARGV[1], ARGV[2]
local LIVE, FINISHED, HOOK_SEQ, HOOK_DUE = P .. 'live', P .. 'finished', P .. 'hook:seq', P .. 'hook:due'
local ACTIVE, WAIT, PRIO = B .. 'active', B .. 'wait', B .. 'prioritized'
local function recKey(id) return P .. 'job:' .. id end
local function liveOf(keyId) return P .. 'live:' .. keyId end
local function fileKey(id, name) return P .. 'file:' .. id .. ':' .. name end
local function hookKey(n) return P .. 'hook:' .. n end
local function bullJob(id) return B .. id end
local function inActive(id) return redis.call('LPOS', ACTIVE, id) ~= false end

-- Live jobs in BullMQ's active list, in all and for one key. The active list holds only the jobs
-- running now (plus, briefly, a dead node's until the stalled check), so this stays cheap.
local function runningCounts(keyId)
  local all, mine = 0, 0
  for _, id in ipairs(redis.call('LRANGE', ACTIVE, 0, -1)) do
    if redis.call('SISMEMBER', LIVE, id) == 1 then
      all = all + 1
      if keyId and redis.call('SISMEMBER', liveOf(keyId), id) == 1 then mine = mine + 1 end
    end
  end
  return all, mine
end

-- BullMQ hands out its wait list first, from the right (stalled jobs land there), then its
-- prioritized set by score (priority, then insertion order; a requeued job scores first in its
-- priority). A job not in either yet is being submitted and goes last.
local function locate(id)
  if inActive(id) then return 'running', -1 end
  local waitLen = redis.call('LLEN', WAIT)
  local idx = redis.call('LPOS', WAIT, id)
  if idx then return 'queued', waitLen - 1 - idx end
  local rank = redis.call('ZRANK', PRIO, id)
  if rank then return 'queued', waitLen + rank end
  return 'queued', waitLen + redis.call('ZCARD', PRIO)
end

-- Takes a queued job out of BullMQ's line for good (it is cancelled or failed before it ran).
local function dequeue(id)
  redis.call('LREM', WAIT, 0, id)
  redis.call('ZREM', PRIO, id)
  redis.call('DEL', bullJob(id), bullJob(id) .. ':logs')
end

-- live -> terminal, with the files and the webhook row, all expiring together at now + ttl.
-- files: flat list name, type, bytes, ...; hookBody false for no webhook.
local function finish(id, status, now, ttl, fields, files, hookBody)
  local rec = recKey(id)
  local bj = bullJob(id)
  local expireAt = now + ttl
  local started = inActive(id) and redis.call('HGET', bj, 'processedOn')
  local attempts = redis.call('HGET', bj, 'ats') or redis.call('HGET', rec, 'attempts') or '0'
  redis.call('HSET', rec, 'status', status, 'finishedAt', now, 'attempts', attempts)
  if started then redis.call('HSET', rec, 'startedAt', started) else redis.call('HDEL', rec, 'startedAt') end
  for i = 1, #fields, 2 do redis.call('HSET', rec, fields[i], fields[i + 1]) end
  local names = {}
  for i = 1, #files, 3 do
    local key = fileKey(id, files[i])
    redis.call('DEL', key)
    redis.call('HSET', key, 'type', files[i + 1], 'bytes', files[i + 2])
    redis.call('PEXPIREAT', key, expireAt)
    names[#names + 1] = files[i]
  end
  if #names > 0 then redis.call('HSET', rec, 'files', cjson.encode(names)) end
  local url = redis.call('HGET', rec, 'webhookUrl')
  local keyId = redis.call('HGET', rec, 'keyId')
  if hookBody and url then
    local n = redis.call('INCR', HOOK_SEQ)
    redis.call('HSET', hookKey(n), 'requestId', id, 'keyId', keyId or '', 'url', url, 'body', hookBody, 'attempts', 0, 'nextAttemptAt', now, 'state', 'pending')
    redis.call('PEXPIREAT', hookKey(n), expireAt)
    redis.call('ZADD', HOOK_DUE, now, n)
    redis.call('HSET', rec, 'hooks', n)
  end
  redis.call('SREM', LIVE, id)
  redis.call('SREM', liveOf(keyId), id)
  redis.call('ZADD', FINISHED, now, id)
  redis.call('PEXPIREAT', rec, expireAt)
end

-- A running job may be finished or put back only with the lock BullMQ gave its claim.
-- Returns nil when the caller holds it, else the error pair the store turns into JobStoreError.
local function expectHeld(id, token, queuedOk)
  local status = redis.call('HGET', recKey(id), 'status')
  if not status then return {'not_found', 'missing'} end
  if status ~= 'queued' then return {'wrong_state', status} end
  if not inActive(id) then
    if queuedOk then return nil end
    return {'wrong_state', 'queued'}
  end
  if token == '' or redis.call('GET', bullJob(id) .. ':lock') ~= token then return {'wrong_state', 'running on another node'} end
  return nil
end
`;

/** The names the scripts build (PRELUDE), for the few commands sent without a script. */
export const keyNames = (prefix: string) => ({
  record: (id: string) => `${prefix}:job:${id}`,
  file: (id: string, name: string) => `${prefix}:file:${id}:${name}`,
  live: `${prefix}:live`,
  liveOf: (keyId: string) => `${prefix}:live:${keyId}`,
});

/** One script: its Lua (with the shared prelude) and its SHA1 for EVALSHA. */
export class Script {
  readonly lua: string;
  readonly sha: string;
  constructor(body: string) {
    this.lua = PRELUDE + body;
    this.sha = createHash('sha1').update(this.lua).digest('hex');
  }

  /** Runs it, loading it first on a server that does not know it yet (a fresh or restarted Redis). */
  async run(redis: Redis, prefixes: [string, string], args: (string | number | Buffer)[]): Promise<unknown> {
    const argv = [...prefixes, ...args];
    try {
      return await redis.evalsha(this.sha, 0, ...argv);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.lua, 0, ...argv);
    }
  }
}

export const SCRIPTS = {
  /** ARGV 3.. id, keyId, maxQueuedPerKey, maxQueued, field, value, ... -> 'ok' | 'key_full' | 'full' */
  submit: new Script(`
local id, keyId = ARGV[3], ARGV[4]
local running, mine = runningCounts(keyId)
if redis.call('SCARD', liveOf(keyId)) - mine >= tonumber(ARGV[5]) then return 'key_full' end
if redis.call('SCARD', LIVE) - running >= tonumber(ARGV[6]) then return 'full' end
if redis.call('EXISTS', recKey(id)) == 1 then return redis.error_reply('job ' .. id .. ' already exists') end
redis.call('HSET', recKey(id), unpack(ARGV, 7))
redis.call('SADD', LIVE, id)
redis.call('SADD', liveOf(keyId), id)
return 'ok'
`),

  /** ARGV 3.. id -> position (the job was just added to BullMQ) */
  position: new Script(`
local _, position = locate(ARGV[3])
return position
`),

  /** ARGV 3.. id, now, ttl -> {'ok', record...} | {'gone'} | {'cancelled'}. Called right after
   * BullMQ handed this node the job: a job already finished (its BullMQ move was lost to a crash)
   * or whose cancel was asked for while it ran on a node that died is not run again. */
  claimed: new Script(`
local id = ARGV[3]
local rec = recKey(id)
if redis.call('HGET', rec, 'status') ~= 'queued' then return {'gone'} end
if redis.call('HGET', rec, 'cancel') == '1' then
  finish(id, 'cancelled', tonumber(ARGV[4]), tonumber(ARGV[5]), {}, {}, false)
  return {'cancelled'}
end
return {'ok', redis.call('HGETALL', rec)}
`),

  /** ARGV 3.. id, token, status, now, ttl, result|'', error|'', hasHook '1'|'0', hookBody, file
   * triples... -> {'ok', wasRunning '1'|'0'} | {code, state}. Fail also takes a queued job. */
  finish: new Script(`
local id, token, status = ARGV[3], ARGV[4], ARGV[5]
local problem = expectHeld(id, token, status == 'failed')
if problem then return problem end
local running = inActive(id)
local fields = {}
if ARGV[8] ~= '' then fields[#fields + 1] = 'result'; fields[#fields + 1] = ARGV[8] end
if ARGV[9] ~= '' then fields[#fields + 1] = 'error'; fields[#fields + 1] = ARGV[9] end
local hookBody = ARGV[10] == '1' and ARGV[11]
finish(id, status, tonumber(ARGV[6]), tonumber(ARGV[7]), fields, {unpack(ARGV, 12)}, hookBody)
if not running then dequeue(id) end
return {'ok', running and '1' or '0'}
`),

  /** ARGV 3.. id, token, now, ttl -> {'queued'} | {'cancelled'} | {code, state}. 'queued' writes
   * nothing: the caller then hands the job back to BullMQ, which puts it first in its priority. */
  requeue: new Script(`
local id = ARGV[3]
local problem = expectHeld(id, ARGV[4], false)
if problem then return problem end
if redis.call('HGET', recKey(id), 'cancel') == '1' then
  finish(id, 'cancelled', tonumber(ARGV[5]), tonumber(ARGV[6]), {}, {}, false)
  return {'cancelled'}
end
redis.call('HDEL', recKey(id), 'startedAt')
return {'queued'}
`),

  /** ARGV 3.. id, keyId, now, ttl -> 'cancelled' | 'running' | 'finished' | 'not_found' */
  cancel: new Script(`
local id, keyId = ARGV[3], ARGV[4]
local rec = recKey(id)
local status = redis.call('HGET', rec, 'status')
if not status or redis.call('HGET', rec, 'keyId') ~= keyId then return 'not_found' end
if status ~= 'queued' then return 'finished' end
if inActive(id) then
  redis.call('HSET', rec, 'cancel', '1')
  return 'running'
end
finish(id, 'cancelled', tonumber(ARGV[5]), tonumber(ARGV[6]), {}, {}, false)
dequeue(id)
return 'cancelled'
`),

  /** ARGV 3.. id, keyId -> false | {record..., status, position, attempts, startedAt|''} */
  get: new Script(`
local id = ARGV[3]
local rec = recKey(id)
if redis.call('HGET', rec, 'keyId') ~= ARGV[4] then return false end
local fields = redis.call('HGETALL', rec)
if redis.call('HGET', rec, 'status') ~= 'queued' then return {fields} end
local status, position = locate(id)
local bj = bullJob(id)
local started = status == 'running' and redis.call('HGET', bj, 'processedOn') or ''
return {fields, status, position, redis.call('HGET', bj, 'ats') or '0', started}
`),

  /** -> {queued, running} */
  counts: new Script(`
local running = runningCounts(nil)
return {redis.call('SCARD', LIVE) - running, running}
`),

  /** ARGV 3.. now, limit, leaseUntil -> {{n, requestId, url, body, attempts, nextAttemptAt, keyId}...}.
   * Handing a row out moves its score to the lease's end, so no other node gets it meanwhile; if
   * its outcome is never recorded (the node died mid-post) it is due again when the lease ends. */
  dueHooks: new Script(`
local out = {}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', HOOK_DUE, '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))) do
  local h = redis.call('HMGET', hookKey(n), 'requestId', 'url', 'body', 'attempts', 'nextAttemptAt', 'state', 'keyId')
  if h[6] ~= 'pending' then
    redis.call('ZREM', HOOK_DUE, n)
  else
    redis.call('ZADD', HOOK_DUE, ARGV[5], n)
    out[#out + 1] = {n, h[1], h[2], h[3], h[4], h[5], h[7] or ''}
  end
end
return out
`),

  /** ARGV 3.. n, 'delivered' | 'gave_up' | 'retry', nextAttemptAt, lastError. A row that is no
   * longer pending (settled, or expired with its job) is left alone. */
  hookAttempted: new Script(`
local key = hookKey(ARGV[3])
if redis.call('HGET', key, 'state') ~= 'pending' then return 0 end
redis.call('HINCRBY', key, 'attempts', 1)
if ARGV[4] == 'retry' then
  redis.call('HSET', key, 'nextAttemptAt', ARGV[5])
  redis.call('ZADD', HOOK_DUE, ARGV[5], ARGV[3])
else
  redis.call('HSET', key, 'state', ARGV[4], 'lastError', ARGV[6])
  redis.call('ZREM', HOOK_DUE, ARGV[3])
end
return 1
`),

  /** ARGV 3.. id, keyId, now, ttl, count of field args, field, value, ..., file triples...: a
   * finished job that never was in the queue (recordCompleted). */
  record: new Script(`
local id = ARGV[3]
if redis.call('EXISTS', recKey(id)) == 1 then return redis.error_reply('job ' .. id .. ' already exists') end
local nFields = tonumber(ARGV[7])
local fields = {unpack(ARGV, 8, 7 + nFields)}
local files = {unpack(ARGV, 8 + nFields)}
redis.call('HSET', recKey(id), 'keyId', ARGV[4], 'status', 'queued')
finish(id, 'completed', tonumber(ARGV[5]), tonumber(ARGV[6]), fields, files, false)
return 1
`),

  /** ARGV 3.. cutoff, batch -> {records deleted, finished entries looked at}. Redis's own TTLs
   * delete the keys on time; this does it for expire(now)'s clock and tidies the indexes. */
  expire: new Script(`
local removed = 0
local ids = redis.call('ZRANGEBYSCORE', FINISHED, '-inf', '(' .. ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  local rec = recKey(id)
  local files, hooks = redis.call('HGET', rec, 'files'), redis.call('HGET', rec, 'hooks')
  if files then
    for _, name in ipairs(cjson.decode(files)) do redis.call('DEL', fileKey(id, name)) end
  end
  if hooks then
    redis.call('DEL', hookKey(hooks))
    redis.call('ZREM', HOOK_DUE, hooks)
  end
  removed = removed + redis.call('DEL', rec)
  redis.call('ZREM', FINISHED, id)
end
return {removed, #ids}
`),

  /** ARGV 3.. createdBefore -> reservations dropped. A live record with no BullMQ job is a submit
   * whose node died between the two writes: its caller never got the id, so it goes. */
  sweep: new Script(`
local dropped = 0
for _, id in ipairs(redis.call('SMEMBERS', LIVE)) do
  if redis.call('EXISTS', bullJob(id)) == 0 then
    local rec = recKey(id)
    local created = tonumber(redis.call('HGET', rec, 'createdAt'))
    if not created or created < tonumber(ARGV[3]) then
      local keyId = redis.call('HGET', rec, 'keyId')
      redis.call('SREM', LIVE, id)
      if keyId then redis.call('SREM', liveOf(keyId), id) end
      redis.call('DEL', rec)
      dropped = dropped + 1
    end
  end
end
return dropped
`),
} as const;
