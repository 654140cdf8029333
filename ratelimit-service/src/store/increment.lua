-- One rate limit decision's counting, atomically, in one round trip (EVALSHA).
-- Keys are built here the way keys.rs and store/memory.rs build them; the service
-- sends the parts (written once at configuration load) and the request's values,
-- already escaped.
--
-- ARGV: the number of descriptors, then for each descriptor:
--   key head (`mcp_rl:{<domain>`), window start, window seconds, hits,
--   expiry (Unix seconds), the number of levels, then for each level:
--     segment (`|key=value` or `|key`), value (escaped; '' for a listed value),
--     max distinct values ('' for a listed value), scope rest.
-- Returns, for each descriptor: the new count, 1 if it was counted on an overflow
-- counter (0 otherwise), and which key-only levels have their own value (bit n for
-- the n-th key-only level, the first 52), so the service can count them without this
-- script next time (store/redis.rs).
local out = {}
local i = 2
for _ = 1, tonumber(ARGV[1]) do
  local key = ARGV[i]
  local window_start, window_seconds = ARGV[i + 1], ARGV[i + 2]
  local hits, expire_at = ARGV[i + 3], ARGV[i + 4]
  local levels = tonumber(ARGV[i + 5])
  i = i + 6
  local overflow, own_levels, key_only = 0, 0, 0
  for _ = 1, levels do
    local segment, value, max, rest = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    i = i + 4
    key = key .. segment
    if max ~= '' then
      key_only = key_only + 1
      -- A key-only level: the value has its own counter if its scope already knows
      -- it, or has room for it in this window; otherwise the scope's overflow counter.
      local scope = key .. rest .. '}:' .. window_start .. '/' .. window_seconds
      local own = redis.call('SISMEMBER', scope, value) == 1
      if not own and redis.call('SCARD', scope) < tonumber(max) then
        redis.call('SADD', scope, value)
        redis.call('EXPIREAT', scope, expire_at)
        own = true
      end
      if own then
        key = key .. '=' .. value
        if key_only <= 52 then
          own_levels = own_levels + 2 ^ (key_only - 1)
        end
      else
        key = key .. '=%overflow'
        overflow = 1
      end
    end
  end
  key = key .. '}:' .. window_start
  local count = redis.call('INCRBY', key, hits)
  -- Only a new counter needs its expiry (the script runs atomically, so the counter
  -- cannot exist without one).
  if count == tonumber(hits) then
    redis.call('EXPIREAT', key, expire_at)
  end
  out[#out + 1] = count
  out[#out + 1] = overflow
  out[#out + 1] = own_levels
end
return out
