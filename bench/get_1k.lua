-- GET a 1 KiB text/plain body (the test backend's /size/N route).
wrk.method = "GET"
wrk.path   = "/size/1024"
dofile((debug.getinfo(1, "S").source:sub(2):match("^(.*/)") or "./") .. "report.lua")
