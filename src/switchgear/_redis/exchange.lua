-- A shared breaker's whole exchange with Redis, run atomically per breaker per round.
-- Arguments and reply are encoded and decoded by codec.py (exchange_args, parse_reply).
local S, P, W = KEYS[1], KEYS[2], KEYS[3]
local ft = tonumber(ARGV[1])
local st = tonumber(ARGV[2])
local open_ms = tonumber(ARGV[3])
local hmax = tonumber(ARGV[4])
local frt = tonumber(ARGV[5])
local srt = tonumber(ARGV[6])
local window_ms = tonumber(ARGV[7])
local min_calls = tonumber(ARGV[8])
local ttl_ms = tonumber(ARGV[9])
-- The open backoff (switchgear/_breaker/backoff.py is the same rule): after k failed trial
-- episodes in a row OPEN lasts min(open_ms * factor^k, max_ms), less the caller's jitter draw.
local factor = tonumber(ARGV[25])
local max_ms = tonumber(ARGV[26])
local draw = tonumber(ARGV[27])
local FIRST_TRIAL = 28

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = false
local seeded = 0

local h = redis.call('HMGET', S, 'state', 'epoch', 'since', 'failures', 'successes',
                    'backoffs', 'interval')
local state, epoch, since, failures, successes
local backoffs = tonumber(h[6]) or 0
local interval = tonumber(h[7]) or open_ms
if not h[1] then
  -- No shared state (first use, expired, or Redis lost it): seed it from the caller's.
  state = ARGV[10]
  epoch = 0
  since = now - tonumber(ARGV[11])
  failures = 0
  successes = 0
  redis.call('DEL', P, W)
  changed = true
  seeded = 1
else
  state = h[1]
  epoch = tonumber(h[2])
  since = tonumber(h[3])
  failures = tonumber(h[4])
  successes = tonumber(h[5])
  if ARGV[20] ~= '' and epoch == 0 and state == ARGV[20] then
    -- The caller seeded this state, but its state moved on while that request was in
    -- flight (e.g. retried during an outage). Nobody changed it since: reseed it.
    state = ARGV[10]
    since = now - tonumber(ARGV[11])
    failures = 0
    successes = 0
    backoffs = 0
    interval = open_ms
    redis.call('DEL', P, W)
    changed = true
    seeded = 1
  end
end
local before = state
local epoch_found = epoch
local moves = {}

local function open_interval(k)
  local grown = open_ms
  if factor > 1 and k > 0 then grown = math.min(open_ms * factor ^ k, max_ms) end
  return math.floor(grown * (1 - draw) + 0.5)
end

local function move(to, at, counted)
  if to == 'open' then
    if state == 'half_open' then backoffs = backoffs + 1 else backoffs = 0 end
    interval = open_interval(backoffs)
  elseif to == 'closed' then
    backoffs = 0
    interval = open_ms
  end
  if counted then
    moves[#moves + 1] = state
    moves[#moves + 1] = to
  end
  if to == 'open' then
    redis.call('HINCRBY', S, 'opens', 1)
  end
  state = to
  epoch = epoch + 1
  since = at
  failures = 0
  successes = 0
  redis.call('DEL', P, W)
  changed = true
end

-- Time-based transitions, each at its own logical time.
while true do
  if state == 'open' then
    local due = since + interval
    if now < due then break end
    move('half_open', due, true)
  elseif state == 'half_open' then
    local oldest = nil
    for _, v in ipairs(redis.call('HVALS', P)) do
      local x = tonumber(v)
      if oldest == nil or x < oldest then oldest = x end
    end
    -- A trial permit unreturned open_timeout after it was granted is a failed trial.
    if oldest == nil or now < oldest + open_ms then break end
    move('open', oldest + open_ms, true)
  else
    break
  end
end

-- A manual command: the caller already counted it, so it is not reported as a move.
local cmd = ARGV[18]
if cmd ~= '' then
  local target = cmd
  if cmd == 'reset' then target = 'closed' end
  if state ~= target then
    move(target, now, false)
  elseif cmd == 'reset' then
    failures = 0
    redis.call('DEL', W)
    changed = true
  end
end

-- A trip the caller already made on its own evidence (its consecutive failures on top of
-- the fleet streak it saw), proposed as a compare-and-set on the epoch that evidence belongs
-- to (-1: before its first exchange, so the current one). If the fleet moved on meanwhile
-- (another process tripped first), the proposal is void and the caller adopts the answer.
if ARGV[23] ~= '' and state == 'closed' then
  local trip_from = tonumber(ARGV[23])
  if trip_from == epoch or trip_from == -1 then move('open', now, true) end
end

-- Counted outcomes of calls admitted while CLOSED in this same epoch (-1: before the
-- caller's first exchange, so the current one).
local counted_in = tonumber(ARGV[12])
if state == 'closed' and (counted_in == epoch or counted_in == -1) then
  local reset = tonumber(ARGV[13])
  local streak = tonumber(ARGV[14])
  local calls = tonumber(ARGV[15])
  local trip = false
  if reset == 1 or streak > 0 then
    if reset == 1 then
      -- A success came in between: the run before it (added to what the store had) and
      -- any complete run after it may each have reached the threshold on their own.
      trip = failures + tonumber(ARGV[21]) >= ft or tonumber(ARGV[22]) >= ft
      failures = streak
    else
      failures = failures + streak
    end
    changed = true
    trip = trip or failures >= ft
  end
  if not trip and (frt or srt) and calls > 0 then
    local width = math.max(math.floor(window_ms / 60), 1)
    local slot = math.floor(now / width)
    redis.call('HINCRBY', W, slot .. ':c', calls)
    redis.call('HINCRBY', W, slot .. ':f', tonumber(ARGV[16]))
    redis.call('HINCRBY', W, slot .. ':s', tonumber(ARGV[17]))
    local sums = {c = 0, f = 0, s = 0}
    local flat = redis.call('HGETALL', W)
    for i = 1, #flat, 2 do
      local sep = string.find(flat[i], ':', 1, true)
      local at = tonumber(string.sub(flat[i], 1, sep - 1))
      if at <= slot - 60 then
        redis.call('HDEL', W, flat[i])
      else
        local kind = string.sub(flat[i], sep + 1)
        sums[kind] = sums[kind] + tonumber(flat[i + 1])
      end
    end
    if sums.c >= min_calls and ((frt and sums.f >= frt * sums.c) or
                                (srt and sums.s >= srt * sums.c)) then
      trip = true
    end
    changed = true
  end
  if trip then move('open', now, true) end
end

-- Results of trial calls; a permit not in the hash belongs to an earlier episode.
for i = FIRST_TRIAL, #ARGV - 1, 2 do
  if state == 'half_open' and redis.call('HDEL', P, ARGV[i]) == 1 then
    changed = true
    local outcome = tonumber(ARGV[i + 1])
    if outcome == 1 then
      successes = successes + 1
      if successes >= st then move('closed', now, true) end
    elseif outcome == 0 then
      move('open', now, true)
    end
  end
end

-- Trial permits: at most half_open_max_calls per episode, fleet-wide.
local granted = {}
local want = tonumber(ARGV[19])
if state == 'half_open' and want > 0 then
  local inflight = redis.call('HLEN', P)
  while want > 0 and successes + inflight < hmax do
    local id = redis.call('HINCRBY', S, 'seq', 1)
    redis.call('HSET', P, id, now)
    granted[#granted + 1] = id
    inflight = inflight + 1
    want = want - 1
    changed = true
  end
end

if changed then
  redis.call('HSET', S, 'state', state, 'epoch', epoch, 'since', since,
             'failures', failures, 'successes', successes, 'backoffs', backoffs,
             'interval', interval)
  redis.call('PEXPIRE', S, ttl_ms)
  redis.call('PEXPIRE', P, ttl_ms)
  redis.call('PEXPIRE', W, ttl_ms)
end
-- Announce every transition (automatic or manual) to the processes sharing this breaker:
-- "<epoch> <state key>", so each can tell whether it has already seen it.
if ARGV[24] ~= '' and epoch ~= epoch_found then
  redis.call('PUBLISH', ARGV[24], epoch .. ' ' .. S)
end
return {before, state, epoch, now - since, failures, successes, redis.call('HLEN', P),
        moves, granted, seeded, backoffs, interval}
