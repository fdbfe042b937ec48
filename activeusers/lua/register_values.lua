-- Gives values of one indexed property their ids in its registry: first come first served, the same for every
-- writer because the script is atomic (two consumers racing for the last place get the same answer). KEYS[1]: the
-- registry (HASH value -> id, 1, 2, ... dense); ARGV[1]: the most values it holds (SEGMENT_MAX_VALUES); ARGV[2..]:
-- the values. A value already there keeps its id; a new one gets the next id while the registry holds fewer than
-- ARGV[1], else 0, the id of "(other)" (never stored, so a full registry stays full and every later value is
-- "(other)" for good). Returns the ids in the order of the values.
local call, cap, ids = redis.call, tonumber(ARGV[1]), {}
for i = 2, #ARGV do
  local id = call('HGET', KEYS[1], ARGV[i])
  if not id then
    local size = call('HLEN', KEYS[1])
    if size < cap then
      id = size + 1
      call('HSET', KEYS[1], ARGV[i], id)
    else
      id = 0
    end
  end
  ids[#ids + 1] = tonumber(id)
end
return ids
