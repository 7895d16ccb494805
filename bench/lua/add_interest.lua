-- POST /interests: seeded users follow airports, a new pair per request (201 each).
-- args: number of seeded users, first pair number, stride (wrk threads), then airport codes.
-- Thread t sends pairs first + t, first + t + stride, ...: no two requests of a run share a
-- pair, and a run that starts after the pairs of the previous ones creates new interests too.
local users, airports, counter, stride = 1, {}, 0, 1

function init(args)
   users = tonumber(args[1])
   stride = tonumber(args[3])
   for i = 4, #args do airports[#airports + 1] = args[i] end
   counter = tonumber(args[2]) + tid - stride
end

function request()
   counter = counter + stride
   local user = counter % users
   local airport = airports[math.floor(counter / users) % #airports + 1]
   local body = string.format(
      '{"email": "seed%06d@example.com", "airport_code": "%s"}', user, airport)
   return wrk.format("POST", "/interests", {["Content-Type"] = "application/json"}, body)
end
