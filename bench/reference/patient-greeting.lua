-- wrk script for the reference Node service (cds-hooks/sandbox-cds-services): POST a
-- patient-view request with the Patient prefetched to its patient-greeting service.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local f = assert(io.open(dir .. "patient-greeting.json", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
