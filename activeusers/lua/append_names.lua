-- Lists the ids of numbers given before the names list existed (`active-users reindex`). KEYS[1]: a user bucket's
-- ids hash; KEYS[2]: its names list; KEYS[3]: when that list was begun (set here when this call begins it, as
-- number_users.lua does); ARGV[1]: the first number given; ARGV[2..]: the ids of that number and the following
-- ones, in order (read from the hash by the caller).
-- Appends them only where they belong: when the list holds exactly the numbers before ARGV[1] (else another run,
-- or the numbering itself, got there first), and only when the hash still gives each id its place (the ids were
-- read by a scan, outside this call). Replies the list's length afterwards, so the caller knows where to go on.
local start = tonumber(ARGV[1])
local listed = redis.call('LLEN', KEYS[2])
if listed ~= start or #ARGV < 2 then
  return listed
end
local ids = {}
for i = 2, #ARGV do
  ids[i - 1] = ARGV[i]
end
local numbers = redis.call('HMGET', KEYS[1], unpack(ids))
for i = 1, #ids do
  if tonumber(numbers[i]) ~= start + i - 1 then
    return redis.error_reply('ERR append_names: ' .. ids[i] .. ' is not user number ' .. (start + i - 1))
  end
end
if start == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[3], now[1] .. '.' .. now[2])
end
return redis.call('RPUSH', KEYS[2], unpack(ids))
