-- GET /users/<email> of a random seeded user. args: number of seeded users
local users = 1

function init(args)
   users = tonumber(args[1] or "1")
   math.randomseed(os.time() + tid)
end

function request()
   return wrk.format("GET", string.format("/users/seed%06d@example.com", math.random(0, users - 1)))
end
