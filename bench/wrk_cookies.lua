-- tether-bench: wrk's thread N sends the Cookie header given as the script's
-- argument N (in turn), so its connections are sticky to one node each, as
-- the harness's own http connections are. The request stays static: wrk
-- formats it once per thread and calls no Lua per request.
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_index", threads)
end

function init(args)
   if #args > 0 then
      wrk.headers["Cookie"] = args[(thread_index - 1) % #args + 1]
   end
end
