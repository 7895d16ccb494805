-- The ceiling app: GET /noop, GET /select/<random n>, GET /page/<random n>, POST /insert.
-- args: method
local method = "GET"

function init(args)
   method = args[1] or method
   math.randomseed(os.time() + tid)
end

function request()
   if wrk.path == "/select" or wrk.path == "/page" then
      return wrk.format("GET", string.format("%s/%d", wrk.path, math.random(0, 9999)))
   end
   return wrk.format(method, wrk.path)
end
