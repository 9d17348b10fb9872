-- Prelude of the list scripts. KEYS[1]: sorted set member -> expiry (ms; NEVER for a
-- member kept until removed). A member is live while its expiry is after now.
local NEVER = 9007199254740992
local now = now_ms()
