-- GET one fixed path (list_users: the first page of /users).
function request()
   return wrk.format("GET", wrk.path)
end
