-- wrk script: POST the ~50-resource order-sign request to JAKGuard.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("bench/order-sign-50.json", "r"))
wrk.body = f:read("*a")
f:close()
