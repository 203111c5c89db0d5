-- wrk script: the order-sign request of order-sign.lua, each with a fresh bearer JWT taken
-- from bench/tokens.txt (minted by bench/mint_tokens.py). Threads take interleaved tokens,
-- so no token is sent twice.
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local f = assert(io.open("bench/order-sign-50.json", "r"))
  wrk.body = f:read("*a")
  f:close()
  tokens = {}
  for line in io.lines("bench/tokens.txt") do tokens[#tokens + 1] = line end
  step = tonumber(args[1] or "2")
  n = id + 1
end
function request()
  local t = tokens[n]
  n = n + step
  if t == nil then t = "exhausted" end
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. t })
end
