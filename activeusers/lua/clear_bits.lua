-- Clears the bits of some user numbers in some of one user bucket's bitmaps, keeping each day's counters equal to
-- its bitmaps' bit counts (the erasure after forget_users.lua). ARGV[1]: how many numbers; then the numbers; then
-- the number of day groups; then per group its number of bitmaps and each bitmap's counter ("#slot", or "-" for a
-- bitmap without one: the first-day bitmaps). KEYS: per group its counts key, then its bitmaps.
-- One BITFIELD GET reads every number's bit of a bitmap; a set one is cleared (SETBIT) and counted off the day's
-- counter (one BITFIELD INCRBY per group, only on a counts key that exists: one created here would never expire).
-- A missing bitmap reads as zeros and is not created. Atomic per call, so a concurrent writer's counters stay
-- exact; the caller sizes calls so that each stays short.
-- Replies the positions (from 1) of the groups where a bit was cleared: their days get a new version.
local call, unpack = redis.call, unpack
local users = tonumber(ARGV[1])
local gets = {}
for i = 1, users do
  gets[#gets + 1], gets[#gets + 2], gets[#gets + 3] = 'GET', 'u1', ARGV[1 + i]
end
local a, k, touched = users + 3, 1, {}
for g = 1, tonumber(ARGV[users + 2]) do
  local counts, records, incr, changed = KEYS[k], tonumber(ARGV[a]), {}, false
  k, a = k + 1, a + 1
  for _ = 1, records do
    local key, cleared = KEYS[k], 0
    local bits = call('BITFIELD', key, unpack(gets))
    for i = 1, users do
      if bits[i] == 1 then
        call('SETBIT', key, ARGV[1 + i], '0')
        cleared = cleared + 1
      end
    end
    if cleared > 0 then
      changed = true
      if ARGV[a] ~= '-' then
        incr[#incr + 1], incr[#incr + 2], incr[#incr + 3], incr[#incr + 4] = 'INCRBY', 'u32', ARGV[a], -cleared
      end
    end
    k, a = k + 1, a + 1
  end
  if #incr > 0 and call('EXISTS', counts) == 1 then
    call('BITFIELD', counts, unpack(incr))
  end
  if changed then
    touched[#touched + 1] = g
  end
end
return touched
