-- Lifts the tombstones of the user ids given (ARGV) in one user bucket (`active-users forget --restore`).
-- KEYS[1]: the bucket's ids hash. A tombstone ("\0f:" and the id's SHA-1, forget_users.lua) becomes a retired
-- number ("\0r:", the SHA-1 and the number): the hash keeps its size, so the number is never given again, and the
-- id, no longer known or forgotten, gets a new number with its next event (what was erased stays erased).
-- Replies how many ids were forgotten.
local call, restored = redis.call, 0
for _, id in ipairs(ARGV) do
  local digest = redis.sha1hex(id)
  local tomb = '\0f:' .. digest
  local n = call('HGET', KEYS[1], tomb)
  if n then
    call('HDEL', KEYS[1], tomb)
    call('HSET', KEYS[1], '\0r:' .. digest .. ':' .. n, n)
    restored = restored + 1
  end
end
return restored
