-- Numbers the user ids given (ARGV) in one user bucket. KEYS[1]: the bucket's ids hash (id -> number); KEYS[2]:
-- its names list (number -> id: element n is the id of user number n).
-- A known id keeps its number; an unknown one gets the next free one (the hash's size), in one atomic call, so any
-- number of writers agree and the numbers stay dense. Each new number's id is appended to the names list in the
-- same call, so a number that any bitmap holds always has its id there. The list is appended to only while it
-- holds every number before the new ones: a hash numbered before the list existed is brought up to date by
-- `active-users reindex` (append_names.lua), and its numbers given meanwhile are listed by that run.
-- One HMGET and one HSET for all the ids (each Redis call from Lua costs microseconds, and a backfill meets every
-- user once). Replies the numbers in ARGV order.
local n = redis.call('HLEN', KEYS[1])
local known = redis.call('HMGET', KEYS[1], unpack(ARGV))
local numbers, given, fields, names = {}, {}, {}, {}
for i, id in ipairs(ARGV) do
  if known[i] then
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
    redis.call('RPUSH', KEYS[2], unpack(names))
  end
end
return numbers
