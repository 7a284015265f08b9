-- POST a 4 KiB request body (Content-Length); the answer is 1 KiB. The test
-- backend reads and discards the body. kage does not shadow POST by default.
wrk.method = "POST"
wrk.path   = "/size/1024"
wrk.body   = string.rep("0123456789abcdef", 256)
wrk.headers["Content-Type"] = "application/octet-stream"
dofile((debug.getinfo(1, "S").source:sub(2):match("^(.*/)") or "./") .. "report.lua")
