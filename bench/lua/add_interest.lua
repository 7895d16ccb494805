-- POST /interests: seeded users follow airports, a new pair per request (first 201, later 200).
-- args: number of seeded users, then the airport codes to follow
local users, airports, counter = 1, {}, 0

function init(args)
   users = tonumber(args[1])
   for i = 2, #args do airports[#airports + 1] = args[i] end
   counter = tid * 1000003
end

function request()
   counter = counter + 1
   local user = counter % users
   local airport = airports[math.floor(counter / users) % #airports + 1]
   local body = string.format(
      '{"email": "seed%06d@example.com", "airport_code": "%s"}', user, airport)
   return wrk.format("POST", "/interests", {["Content-Type"] = "application/json"}, body)
end
