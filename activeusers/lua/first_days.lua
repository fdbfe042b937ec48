-- Keeps the first active day of one user bucket's users who were active on one day. KEYS[1]: the bucket's
-- first-day numbers (a string of u16, #n the local day number of user n's first active day, 0 = none), KEYS[2]:
-- the first-day bitmap of that day, KEYS[3]: the bucket's ids hash (to size a new bitmap), KEYS[4]: its forgotten
-- numbers (forget_users.lua: their first days are never recorded again, as set_bits.lua refuses their bits; read
-- once, tested only in a bucket that has one). ARGV: the day's number, the bitmap's expiry (0: sent recently),
-- what precedes a date in the names of the bucket's first-day bitmaps (activeusers/keys.py builds it: the other
-- days' bitmaps are named from it here), and the users' numbers (decimal, separated by spaces).
-- A user whose recorded first day is later than this day (or who has none) is moved here: its bit cleared in the
-- old day's first-day bitmap (if that still lives: SETBIT on a missing key would make one without expiry), set in
-- this one, and the number replaced. An earlier or equal one is left alone, so replays, duplicates and expiry never
-- move a first day later. Returns the day numbers whose bitmaps lost a bit (their index versions must change).
local HEADROOM_MIN_BITS, HEADROOM_SHARE, SLICE = 64, 64, 1000
local call, unpack, floor = redis.call, unpack, math.floor
local day, at, prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]

-- Day number (1 = 1970-01-01) to YYYY-MM-DD: Howard Hinnant's civil_from_days.
local function iso(number)
  local z = number - 1 + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02d', y, m, d)
end

if at ~= '0' then
  if tonumber(at) <= tonumber(call('TIME')[1]) then
    return {}
  end
  local users = call('HLEN', KEYS[3])
  local room = math.max(HEADROOM_MIN_BITS, users / HEADROOM_SHARE)
  if not call('SET', KEYS[2], string.rep('\0', floor((users + room) / 8) + 1), 'NX', 'EXAT', at) then
    call('EXPIREAT', KEYS[2], at)
  end
end

-- Whether number ``n`` is forgotten (a bit test in the bucket's forgotten bitmap, read once).
local gone = call('GET', KEYS[4])
local function retired(n)
  local found = string.byte(gone, floor(n / 8) + 1)
  return found ~= nil and bit.band(bit.rshift(found, 7 - n % 8), 1) == 1
end

local numbers = {}
for n in string.gmatch(ARGV[4], '%d+') do
  numbers[#numbers + 1] = n
end
local lost, moved, olds = {}, {}, {}
-- The first-day bitmap of day ``number`` if it still lives (else false), named and looked up once per call.
local function old_bitmap(number)
  local found = olds[number]
  if found == nil then
    found = prefix .. iso(number)
    if call('EXISTS', found) == 0 then
      found = false
    end
    olds[number] = found
  end
  return found
end
-- In slices of SLICE users: a command's arguments pass through Lua's unpack, which takes at most about 8,000.
for from = 1, #numbers, SLICE do
  local gets, sets, slots, g, s = {}, {}, {}, 0, 0
  local to = math.min(from + SLICE - 1, #numbers)
  for i = from, to do
    local slot = '#' .. numbers[i]
    slots[i], gets[g + 1], gets[g + 2], gets[g + 3], g = slot, 'GET', 'u16', slot, g + 3
  end
  local firsts = call('BITFIELD', KEYS[1], unpack(gets))
  for i = from, to do
    local n, first = numbers[i], firsts[i - from + 1]
    if not (gone and retired(n)) and (first == 0 or first > day) then
      local old = first > 0 and old_bitmap(first)
      if old then
        if call('SETBIT', old, n, '0') == 1 and not lost[first] then
          lost[first] = true
          moved[#moved + 1] = first
        end
      end
      call('SETBIT', KEYS[2], n, '1')
      sets[s + 1], sets[s + 2], sets[s + 3], sets[s + 4], s = 'SET', 'u16', slots[i], day, s + 4
    end
  end
  if s > 0 then
    call('BITFIELD', KEYS[1], unpack(sets))
  end
end
return moved
