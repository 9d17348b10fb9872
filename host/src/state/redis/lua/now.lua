-- Prelude of every script: the server's clock, so all relays agree on windows and expiries.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An integer as Redis should store it (Lua's own conversion keeps only 14 digits).
local function int(n)
  return string.format('%.0f', n)
end
