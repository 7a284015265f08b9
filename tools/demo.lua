-- Traffic for `make demo`: a mix of endpoints, some of which the demo's
-- sandbox answers differently (user names on odd ids), plus POSTs that
-- are not shadowed (only GET and HEAD are, by default).
local n = 0
request = function()
  n = n + 1
  local k = n % 10
  if k < 5 then
    return wrk.format("GET", "/json/users/" .. (n % 97))
  elseif k < 7 then
    return wrk.format("GET", "/json/orders/" .. (n % 31) .. "?expand=items")
  elseif k < 9 then
    return wrk.format("GET", "/size/" .. (512 + n % 64))
  else
    return wrk.format("POST", "/echo", {["Content-Type"] = "application/json"}, '{"note":"not shadowed"}')
  end
end
