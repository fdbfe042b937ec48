-- Forgets the user ids given (ARGV) in one user bucket, for good: their numbers retired, their ids gone.
-- KEYS[1]: the bucket's ids hash; KEYS[2]: its names list; KEYS[3]: when that list was begun; KEYS[4]: the ids of
-- numbers given while the list is behind (number -> id); KEYS[5]: the bucket's forgotten numbers (a bitmap).
-- An id's field in the ids hash is replaced by its tombstone, "\0f:" and the SHA-1 of the id (never the id), with
-- the same number, so the hash keeps its size (the next number is HLEN: a number is never given twice), and
-- number_users.lua finds the tombstone of an id it is asked to number. An id never numbered gets a number here,
-- retired at once, so that its first event is refused too. The number's bit is set in KEYS[5], which set_bits.lua
-- reads before every bit it sets (a writer may remember the number), and its names list element becomes "" (a
-- reader skips it; kept in KEYS[4] while the list is behind). An id already forgotten keeps its tombstone.
-- The bits of the numbers are cleared afterwards (clear_bits.lua), in calls that each stay short.
-- Replies the numbers in ARGV order.
local ids, names, made, unlisted, gone = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local call = redis.call
local numbers = {}
for i, id in ipairs(ARGV) do
  local tomb = '\0f:' .. redis.sha1hex(id)
  local n = call('HGET', ids, id)
  if n then
    call('HDEL', ids, id)
    call('HSET', ids, tomb, n)
  else
    n = call('HGET', ids, tomb)
    if not n then
      n = call('HLEN', ids)
      call('HSET', ids, tomb, n)
    end
  end
  n = tonumber(n)
  call('SETBIT', gone, n, 1)
  local listed = call('LLEN', names)
  if n < listed then
    call('LSET', names, n, '')
  elseif n == listed then
    if listed == 0 then
      local now = call('TIME')
      call('SET', made, now[1] .. '.' .. now[2])
    end
    call('RPUSH', names, '')
    call('HDEL', unlisted, n)
  else
    call('HSET', unlisted, n, '')
  end
  numbers[i] = n
end
return numbers
