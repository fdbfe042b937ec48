-- Brings a user bucket's names list up to its numbering (`active-users reindex`). KEYS[1]: the bucket's ids hash;
-- KEYS[2]: its names list; KEYS[3]: when that list was begun (set when this call begins it, as number_users.lua
-- does); KEYS[4]: the ids of numbers given while the list was behind (number -> id, kept by number_users.lua);
-- ARGV[1]: the first number given; ARGV[2..]: the ids of that number and the following ones, in order (read from
-- the hash by the caller's scan), or none.
-- The ids given are appended only where they belong: when the list holds exactly the numbers before ARGV[1] (else
-- another run, or the numbering itself, got there first), and only when the hash still gives each id its place
-- (the scan ran outside this call). Then the numbers that follow, kept in KEYS[4] by the numbering meanwhile, are
-- appended too (at most DRAIN a call), so the list catches up with writers that number faster than a scan goes.
-- A forgotten number's field in the hash is its tombstone ("\0f:"/"\0r:" and a SHA-1, forget_users.lua), never an
-- id: it is listed as "", as forget_users.lua lists it.
-- Replies the list's length afterwards, so the caller knows where to go on.
local DRAIN = 1000
local start = tonumber(ARGV[1])
local listed = redis.call('LLEN', KEYS[2])

local function append(ids)
  if listed == 0 then
    local now = redis.call('TIME')
    redis.call('SET', KEYS[3], now[1] .. '.' .. now[2])
  end
  local fields = {}
  for i = 1, #ids do
    fields[i] = listed + i - 1
  end
  redis.call('HDEL', KEYS[4], unpack(fields))
  listed = redis.call('RPUSH', KEYS[2], unpack(ids))
end

if listed == start and #ARGV >= 2 then
  local ids = {}
  for i = 2, #ARGV do
    ids[i - 1] = ARGV[i]
  end
  local numbers = redis.call('HMGET', KEYS[1], unpack(ids))
  for i = 1, #ids do
    if tonumber(numbers[i]) ~= start + i - 1 then
      return redis.error_reply('ERR append_names: ' .. ids[i] .. ' is not user number ' .. (start + i - 1))
    end
    if string.byte(ids[i], 1) == 0 and string.find(ids[i], '^.[fr]:%x+') then
      ids[i] = ''
    end
  end
  append(ids)
end
local kept = {}
for i = 1, DRAIN do
  local id = redis.call('HGET', KEYS[4], listed + i - 1)
  if not id then
    break
  end
  kept[i] = id
end
if #kept > 0 then
  append(kept)
end
return listed
