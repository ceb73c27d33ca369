-- Routes without reloads. routes.tsv (written by minicloud on the host) says which container serves
-- each host; it is read into a shared dictionary at start and when minicloud asks, so switching a
-- release never closes a client's connection. Every proxied request is counted against its upstream
-- until it ends, so minicloud can drain an old release exactly: it stops it when its count is zero.
local M = {}
local ROUTES_FILE = "/etc/minicloud/routes.tsv"
-- a swarm gateway's routes.tsv is an immutable Swarm config: what changes between its updates (a grey
-- release's split) is written here, on the gateway's own volume, and wins over ROUTES_FILE per host
local OVERRIDE_FILE = "/var/lib/minicloud/routes.tsv"
local routes = ngx.shared.minicloud_routes
local inflight = ngx.shared.minicloud_inflight
local stats = ngx.shared.minicloud_stats

-- one line per host: HOST \t CONTAINER \t PORT \t MESSAGE [\t CANARY \t PERCENT]; CONTAINER "-" or
-- "!NAME" is a stopped env, answered 503 with MESSAGE; with CANARY, PERCENT of the users go to it
local function fields(line)
  local out = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do out[#out + 1] = field end
  return out
end

local function read_routes(path, seen)
  local f = io.open(path, "r")
  if not f then return end
  for line in f:lines() do
    local p = fields(line)
    local host, upstream, port, message, canary, percent = p[1], p[2], p[3], p[4] or "", p[5], p[6]
    if host and host ~= "" and upstream and port then
      if upstream == "-" or upstream:sub(1, 1) == "!" then
        routes:set(host, "!" .. message)
      elseif canary and canary ~= "" and tonumber(percent) then
        routes:set(host, upstream .. ":" .. port .. "|" .. canary .. ":" .. port .. "|" .. percent)
      else
        routes:set(host, upstream .. ":" .. port)
      end
      seen[host] = true
    end
  end
  f:close()
end

function M.load()
  local seen = {}
  read_routes(ROUTES_FILE, seen)
  read_routes(OVERRIDE_FILE, seen)
  for _, host in ipairs(routes:get_keys(0)) do
    if not seen[host] then routes:delete(host) end
  end
end

-- Docker's embedded DNS, asked from Lua: the balancer of the kept-alive upstream (below) needs an
-- address, not a name. An answer is fresh for a second per worker, as nginx's own `resolver valid=1s`;
-- after that it is still used for up to STALE seconds while a timer asks again off the request path (a
-- lookup on the path put the engine's DNS into the data API's slowest requests). New routes (a container
-- replaced under the same name) forget every answer: the generation in the shared dictionary.
local DNS_SERVER = "127.0.0.11"
local FRESH, STALE = 1, 10
local dns = ngx.shared.minicloud_dns
local resolved = {}  -- name -> { address, fresh until }
local refreshing = {}  -- name -> true while a timer asks
local generation = 0  -- of `resolved`, against dns:get("generation")

local function skip_name(packet, pos)
  while true do
    local len = packet:byte(pos)
    if not len then return nil end
    if len == 0 then return pos + 1 end
    if len >= 192 then return pos + 2 end  -- a compression pointer ends the name
    pos = pos + 1 + len
  end
end

local function query_a(name)
  local id = math.random(0, 65535)
  local labels = {}
  for label in name:gmatch("[^.]+") do labels[#labels + 1] = string.char(#label) .. label end
  local question = string.char(math.floor(id / 256), id % 256, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0)
    .. table.concat(labels) .. "\0\0\1\0\1"
  local sock = ngx.socket.udp()
  sock:settimeout(1000)
  local ok, err = sock:setpeername(DNS_SERVER, 53)
  if not ok then return nil, err end
  ok, err = sock:send(question)
  if not ok then sock:close(); return nil, err end
  local packet
  packet, err = sock:receive()
  sock:close()
  if not packet then return nil, err end
  if #packet < 12 or packet:byte(1) * 256 + packet:byte(2) ~= id then return nil, "a stray DNS answer" end
  if packet:byte(4) % 16 ~= 0 then return nil, "no such container" end
  local answers = packet:byte(7) * 256 + packet:byte(8)
  local pos = skip_name(packet, 13)
  pos = pos and pos + 4
  for _ = 1, answers do
    pos = pos and skip_name(packet, pos)
    if not pos or #packet < pos + 9 then break end
    local rtype = packet:byte(pos) * 256 + packet:byte(pos + 1)
    local length = packet:byte(pos + 8) * 256 + packet:byte(pos + 9)
    pos = pos + 10
    if rtype == 1 and length == 4 then
      return string.format("%d.%d.%d.%d", packet:byte(pos, pos + 3))
    end
    pos = pos + length
  end
  return nil, "no address"
end

local function refresh(premature, name, asked_in)
  refreshing[name] = nil
  if premature or asked_in ~= generation then return end
  local address = query_a(name)
  if asked_in ~= generation then return end  -- new routes came meanwhile: this answer may be old
  if address then
    resolved[name] = { address, ngx.now() + FRESH }
  else
    resolved[name] = nil  -- gone (stopped): the next request asks on its path and says so
  end
end

local function resolve(name)
  if name:match("^%d+%.%d+%.%d+%.%d+$") then return name end
  local current = dns:get("generation") or 0
  if current ~= generation then
    resolved, refreshing, generation = {}, {}, current
  end
  local now = ngx.now()
  local hit = resolved[name]
  if hit and hit[2] > now then return hit[1] end
  if hit and hit[2] + STALE > now then
    if not refreshing[name] and ngx.timer.at(0, refresh, name, generation) then refreshing[name] = true end
    return hit[1]
  end
  local address, err = query_a(name)
  if address then resolved[name] = { address, now + FRESH } end
  return address, err
end

local function answer(status, text)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain"
  ngx.say("minicloud: " .. text)
  return ngx.exit(status)
end

-- the route of $minicloud_route (HOST, or HOST/fn: the env's functions, else the host's app);
-- `pooled`: proxied through the kept-alive upstream (pooled.conf), so the address is looked up here
function M.route(pooled)
  local key = ngx.var.minicloud_route
  local host = ngx.var.server_name
  local target = routes:get(key) or routes:get(host)
  if not target then
    return answer(404, "no route for " .. key)
  end
  if target:sub(1, 1) == "!" then
    return answer(503, target:sub(2))
  end
  local stable, canary, percent = target:match("^([^|]+)|([^|]+)|(%d+)$")
  if stable then
    -- a grey release: a user keeps the side a cookie says; a new user is drawn, and told by a cookie
    local side = ngx.var.cookie_minicloud_canary
    if side ~= "1" and side ~= "0" then
      side = (math.random(100) <= tonumber(percent)) and "1" or "0"
      ngx.ctx.minicloud_cookie = "minicloud_canary=" .. side .. "; Path=/; HttpOnly; SameSite=Lax"
    end
    target = (side == "1") and canary or stable
    ngx.ctx.minicloud_split = true
  end
  if pooled then
    local name, port = target:match("^(.+):(%d+)$")
    local address, err = resolve(name or target)
    if not address then
      ngx.log(ngx.WARN, "minicloud: ", target, ": ", err)
      return answer(502, key .. " is not running (" .. tostring(err) .. ")")
    end
    ngx.ctx.minicloud_peer = { address, tonumber(port) }
  elseif target:sub(1, 6) == "tasks." then
    -- a swarm service: with no task running (stopped, scaled to 0, every task starting) say so with a 503,
    -- not nginx's 502; which task serves is nginx's to pick (it tries the next one on a failed connection)
    if not resolve(target:match("^(.+):%d+$") or target) then
      return answer(503, host .. " has no running task (stopped, or starting): minicloud status ENV says which")
    end
  end
  ngx.var.upstream = target
  ngx.ctx.minicloud_upstream = target
  inflight:incr(target, 1, 0)
end

-- balancer_by_lua of the kept-alive upstream: the address route() looked up
function M.balance()
  local peer = ngx.ctx.minicloud_peer
  local ok, err = require("ngx.balancer").set_current_peer(peer[1], peer[2])
  if not ok then
    ngx.log(ngx.ERR, "minicloud: set_current_peer: ", err)
    return ngx.exit(502)
  end
end

-- in the header filter: the cookie that keeps a new user of a grey release on its side
function M.header()
  local cookie = ngx.ctx.minicloud_cookie
  if cookie then
    local existing = ngx.header["Set-Cookie"]
    if existing == nil then
      ngx.header["Set-Cookie"] = cookie
    elseif type(existing) == "table" then
      existing[#existing + 1] = cookie
      ngx.header["Set-Cookie"] = existing
    else
      ngx.header["Set-Cookie"] = { existing, cookie }
    end
  end
end

-- the latency bins of the collector's histograms (services/histogram.py BOUNDS_MS; a test holds them equal)
local BOUNDS_MS = { 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300,
  400, 500, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000, 15000, 20000, 30000,
  60000, 120000 }

local function bin_of(ms)  -- the first bound >= ms (0-based, as Python's bisect_left)
  local low, high = 1, #BOUNDS_MS + 1
  while low < high do
    local mid = math.floor((low + high) / 2)
    if BOUNDS_MS[mid] < ms then low = mid + 1 else high = mid end
  end
  return low - 1
end

function M.done()
  local target = ngx.ctx.minicloud_upstream
  if not target then return end
  inflight:incr(target, -1, 0)
  if ngx.ctx.minicloud_split then
    -- each side of a grey release counted at the gateway: what a swarm env's canary is judged by (one
    -- machine's collector reads the access log instead); only split routes pay for it
    stats:incr(target .. " n", 1, 0)
    if ngx.status >= 500 then stats:incr(target .. " e", 1, 0) end
    stats:incr(target .. " b" .. bin_of((tonumber(ngx.var.request_time) or 0) * 1000), 1, 0)
  end
end

-- POST: read routes.tsv again; answers the routes now in force, one "HOST TARGET" line each
function M.admin_routes()
  if ngx.req.get_method() == "POST" then
    M.load()
    dns:incr("generation", 1, 0)
  end
  for _, host in ipairs(routes:get_keys(0)) do
    ngx.say(host .. " " .. (routes:get(host) or ""))
  end
end

-- GET ?upstream=CONTAINER:PORT: requests in flight to that upstream
function M.admin_inflight()
  ngx.say(inflight:get(ngx.var.arg_upstream or "") or 0)
end

-- GET ?upstream=TARGET: "REQUESTS ERRORS BIN0 … BINn" of that side of a split since its last reset;
-- POST: reset it to zero (a new grey release counts from its start)
function M.admin_stats()
  local target = ngx.var.arg_upstream or ""
  local keys = { target .. " n", target .. " e" }
  for i = 0, #BOUNDS_MS do keys[#keys + 1] = target .. " b" .. i end
  local counts = {}
  for i, key in ipairs(keys) do
    if ngx.req.get_method() == "POST" then stats:delete(key) end
    counts[i] = stats:get(key) or 0
  end
  ngx.say(table.concat(counts, " "))
end

return M
