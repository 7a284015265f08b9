-- Pipelined GETs of a 1 KiB body: every connection writes 16 requests in one
-- go, then waits for the 16 responses before sending the next 16. wrk counts
-- each response as one request.
pipeline_depth = 16   -- global: report.lua reads it
wrk.method = "GET"
wrk.path   = "/size/1024"

local batch
function init(args)
   local one = wrk.format()
   batch = string.rep(one, pipeline_depth)
end

function request()
   return batch
end
dofile((debug.getinfo(1, "S").source:sub(2):match("^(.*/)") or "./") .. "report.lua")
