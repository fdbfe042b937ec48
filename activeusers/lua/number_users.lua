-- Numbers the user ids given (ARGV) in one user bucket. KEYS[1]: the bucket's ids hash (id -> number); KEYS[2]:
-- its names list (number -> id: element n is the id of user number n); KEYS[3]: when that list was begun; KEYS[4]:
-- the ids of numbers given while the list is behind (number -> id); KEYS[5]: the bucket's forgotten numbers.
-- A known id keeps its number; an unknown one gets the next free one (the hash's size), in one atomic call, so any
-- number of writers agree and the numbers stay dense. Each new number's id is appended to the names list in the
-- same call, so a number that any bitmap holds always has its id there. The list is appended to only while it
-- holds every number before the new ones: a hash numbered before the list existed is brought up to date by
-- `active-users reindex` (append_names.lua), and the ids of numbers given meanwhile are kept in KEYS[4], where that
-- run takes them from (so it catches up with a writer faster than its scan of the hash). The call that
-- begins a list records Redis' time in KEYS[3], so a reader holding ids of a list that was lost and begun again
-- (a Redis restarted empty, then a replay) sees that it must read them again.
-- A forgotten id (forget_users.lua: its tombstone, "\0f:" and its SHA-1, is in the hash) gets no number: -1. The
-- tombstones are looked for only among unknown ids, and only in a bucket that has forgotten someone (KEYS[5]).
-- One HMGET and one HSET for all the ids (each Redis call from Lua costs microseconds, and a backfill meets every
-- user once). Replies the numbers in ARGV order.
local n = redis.call('HLEN', KEYS[1])
local known = redis.call('HMGET', KEYS[1], unpack(ARGV))
local numbers, given, fields, names = {}, {}, {}, {}
local unknown = {}
for i = 1, #ARGV do
  if not known[i] then
    unknown[#unknown + 1] = i
  end
end
if #unknown > 0 and redis.call('EXISTS', KEYS[5]) == 1 then
  local tombs = {}
  for j, i in ipairs(unknown) do
    tombs[j] = '\0f:' .. redis.sha1hex(ARGV[i])
  end
  for j, number in ipairs(redis.call('HMGET', KEYS[1], unpack(tombs))) do
    if number then
      known[unknown[j]] = -1
    end
  end
end
for i, id in ipairs(ARGV) do
  if known[i] == -1 then
    numbers[i] = -1
  elseif known[i] then
    numbers[i] = tonumber(known[i])
  elseif given[id] then
    numbers[i] = given[id]
  else
    given[id] = n
    numbers[i] = n
    fields[#fields + 1] = id
    fields[#fields + 1] = n
    names[#names + 1] = id
    n = n + 1
  end
end
if #names > 0 then
  local listed = redis.call('LLEN', KEYS[2])
  redis.call('HSET', KEYS[1], unpack(fields))
  if listed == n - #names then
    if listed == 0 then
      local now = redis.call('TIME')
      redis.call('SET', KEYS[3], now[1] .. '.' .. now[2])
    end
    redis.call('RPUSH', KEYS[2], unpack(names))
  else
    local kept = {}
    for i = 1, #names do
      kept[#kept + 1] = n - #names + i - 1
      kept[#kept + 1] = names[i]
    end
    redis.call('HSET', KEYS[4], unpack(kept))
  end
end
return numbers
