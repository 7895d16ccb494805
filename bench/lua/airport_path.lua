-- GET a flight query for a random seeded airport.
-- args: path template with %s for the airport (e.g. /flights/last/%s), then the airport codes
local template, airports = "/", {}

function init(args)
   template = args[1]
   for i = 2, #args do airports[#airports + 1] = args[i] end
   math.randomseed(os.time() + tid)
end

function request()
   return wrk.format("GET", string.format(template, airports[math.random(1, #airports)]))
end
