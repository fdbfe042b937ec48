-- Sets one user bucket's share of a batch, in groups of one day. KEYS[1]: the bucket's ids hash; KEYS[2]: its
-- forgotten numbers (a bitmap, forget_users.lua); ARGV[1]: the number of groups. A group is its counts key (KEYS)
-- with "counts expiry, records" (ARGV), then per record a bitmap (KEYS) with "counter, bitmap expiry, offsets"
-- (ARGV). The offsets are decimal, separated by spaces: they reach SETBIT as the text they came as, where a number
-- computed in Lua would be formatted back, a printf per bit; one argument per record instead of one per bit costs
-- the client's packing less.
-- Each record sets its bits with one SETBIT per bit (on redis-server 7.0 cheaper than one BITFIELD for any number
-- of bits: 1.0 against 1.4 us a bit at 2 bits, even at 40; a backfill's hour records have 1 to 3) and adds how many
-- were not set before to its counter ("#slot", a u32 of the counts key); the group's counters are added by one
-- BITFIELD. Atomic, so a repeated write counts nothing and the counters stay exact under replays and concurrent
-- writers (counting needs no BITCOUNT).
-- An expiry of 0 means the writer sent it recently: the key is left alone. Otherwise a missing key is created at
-- its full size with its expiry in one SET NX EXAT (a bitmap: the bucket's users, HLEN, plus headroom for the users
-- numbered later that day; grown one SETBIT at a time Redis would over-allocate it up to 2x), an existing one gets
-- its EXPIREAT; a record whose expiry Redis' own clock has passed is skipped (a key created after it would never
-- expire).
-- The bit of a forgotten number is never set: such bits are refused, inside the same call, so no batch in flight,
-- redelivery or replay brings a forgotten user back. The forgotten numbers are read once per call (a GET: one bit
-- per numbered user of the bucket) into a Lua table, one lookup per bit. Replies the refused numbers (the writer
-- numbers their users again: a user forgotten and then restored has a new number).
-- The headroom (at least HEADROOM_MIN_BITS, else 1/HEADROOM_SHARE of the users) and the counts key's size (26
-- counters of 4 bytes) are the ones activeusers/scripts.py states.
local HEADROOM_MIN_BITS, HEADROOM_SHARE, COUNTERS_BYTES = 64, 64, 104
local k, a, zeros, now = 3, 2, nil, nil
local call, unpack = redis.call, unpack
local find, gmatch, byte, band, rshift = string.find, string.gmatch, string.byte, bit.band, bit.rshift

-- The forgotten numbers of a ``forgotten`` bitmap, as a set of their decimal offsets (nil: none). Its zero bytes
-- are skipped by string.find: a few set bits in a bitmap of every numbered user.
local function numbers_of(bits)
  if not bits then
    return nil
  end
  local found, at, any = {}, 1, false
  while true do
    at = find(bits, '[^%z]', at)
    if not at then
      return any and found or nil
    end
    local value = byte(bits, at)
    for i = 0, 7 do
      if band(rshift(value, 7 - i), 1) == 1 then
        found[tostring((at - 1) * 8 + i)], any = true, true
      end
    end
    at = at + 1
  end
end

local forgotten, refused = numbers_of(call('GET', KEYS[2])), {}

-- Sets the bits of ``offsets`` in ``key`` but a forgotten number's (refused); how many were not set before.
local function set(key, offsets)
  if not find(offsets, ' ', 1, true) then
    if forgotten and forgotten[offsets] then
      refused[#refused + 1] = offsets
      return 0
    end
    return 1 - call('SETBIT', key, offsets, '1')
  end
  local new = 0
  for b in gmatch(offsets, '%d+') do
    if forgotten and forgotten[b] then
      refused[#refused + 1] = b
    else
      new = new + 1 - call('SETBIT', key, b, '1')
    end
  end
  return new
end

local function expire(key, at, blank)
  if not now then
    now = tonumber(call('TIME')[1])
  end
  if tonumber(at) <= now then
    return false
  end
  if not call('SET', key, blank(), 'NX', 'EXAT', at) then
    call('EXPIREAT', key, at)
  end
  return true
end

local function bitmap()
  if not zeros then
    local users = call('HLEN', KEYS[1])
    local room = math.max(HEADROOM_MIN_BITS, users / HEADROOM_SHARE)
    zeros = string.rep('\0', math.floor((users + room) / 8) + 1)
  end
  return zeros
end

local function counters()
  return string.rep('\0', COUNTERS_BYTES)
end

for _ = 1, tonumber(ARGV[1]) do
  local counts, at, records, incr, i = KEYS[k], ARGV[a], tonumber(ARGV[a + 1]), {}, 0
  k, a = k + 1, a + 2
  for _ = 1, records do
    local key, new = KEYS[k], 0
    if ARGV[a + 1] == '0' or expire(key, ARGV[a + 1], bitmap) then
      new = set(key, ARGV[a + 2])
    end
    if new > 0 then
      incr[i + 1], incr[i + 2], incr[i + 3], incr[i + 4] = 'INCRBY', 'u32', ARGV[a], new
      i = i + 4
    end
    k, a = k + 1, a + 3
  end
  if (at == '0' or expire(counts, at, counters)) and i > 0 then
    call('BITFIELD', counts, unpack(incr))
  end
end
return refused
