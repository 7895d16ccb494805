-- POST /users again with one of N keys already used: the stored answer is replayed.
-- args: run id, N (bench.runner created replay.<run>.<i>@example.com with key replay-<run>-<i>)
local run, keys, counter = "x", 1, 0

function init(args)
   run = args[1] or run
   keys = tonumber(args[2] or "1")
   counter = tid * 7919
end

function request()
   counter = counter + 1
   local i = counter % keys
   local body = string.format(
      '{"email": "replay.%s.%d@example.com", "first_name": "Mario", "last_name": "Rossi"}', run, i)
   return wrk.format("POST", "/users",
      {["Content-Type"] = "application/json",
       ["Idempotency-Key"] = string.format("replay-%s-%d", run, i)}, body)
end
