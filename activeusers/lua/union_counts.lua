-- Counts the users of unions of one user bucket's bitmaps. KEYS[1]: the bucket's scratch key; ARGV[1]: how long a
-- kept union lives (seconds); then per group three ARGV "kept, others, digest" and its keys (KEYS, in order): with
-- kept > 0 first a kept union and its label, then its kept bitmaps, then the others.
-- A kept union is the OR of its kept bitmaps, made again only when its label does not hold the digest (of what the
-- bitmaps held) and its state (empty, or made: an evicted union is made again too; an empty one is left out). The
-- group's union (the kept union and the others) is ORed into the scratch key (BITOP; one bitmap is counted as it
-- is), counted (BITCOUNT) and the scratch deleted, all inside this call, so concurrent calls never see each other's
-- scratch. Replies the count of each group.
local counts, k, ttl, call = {}, 2, ARGV[1], redis.call
for g = 2, #ARGV, 3 do
  local kept, others, parts = tonumber(ARGV[g]), tonumber(ARGV[g + 1]), {}
  if kept > 0 then
    local union, label = KEYS[k], KEYS[k + 1]
    local made, empty = ARGV[g + 2] .. ' made', ARGV[g + 2] .. ' empty'
    local state = call('GET', label)
    if state ~= empty and not (state == made and call('EXISTS', union) == 1) then
      state = empty
      if call('BITOP', 'OR', union, unpack(KEYS, k + 2, k + 1 + kept)) > 0 then
        call('EXPIRE', union, ttl)
        state = made
      end
      call('SET', label, state, 'EX', ttl)
    end
    if state == made then
      parts[1] = union
    end
    k = k + 2 + kept
  end
  for i = k, k + others - 1 do
    parts[#parts + 1] = KEYS[i]
  end
  k = k + others
  local c = 0
  if #parts == 1 then
    c = call('BITCOUNT', parts[1])
  elseif #parts > 1 then
    call('BITOP', 'OR', KEYS[1], unpack(parts))
    c = call('BITCOUNT', KEYS[1])
    call('DEL', KEYS[1])
  end
  counts[#counts + 1] = c
end
return counts
