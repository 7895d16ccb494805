-- POST /users with a new email, tax code and Idempotency-Key on every request.
-- args: run id (letters and digits, unique per benchmark run)
local run = "x"
local counter = 0

function init(args)
   run = args[1] or run
end

function request()
   counter = counter + 1
   local id = string.format("%s%dn%d", run, tid, counter)
   local body = string.format(
      '{"email": "bench.%s@example.com", "first_name": "Mario", "last_name": "Rossi", ' ..
      '"tax_code": "TX%s", "iban": "IT60 X054 2811 1010 0000 0123 456"}', id, id)
   return wrk.format("POST", "/users",
      {["Content-Type"] = "application/json", ["Idempotency-Key"] = "bench-" .. id}, body)
end
