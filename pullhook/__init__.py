"""pullhook: installed into the single-user image so nbgitpuller links to f2git courses work.

It adds the git remote helper `git-remote-f2git`: for an `f2git://…` or `f2git::http(s)://…`
URL it asks the f2git service where to fetch from (f2git itself, or the course's mirror
after f2git refreshed and pushed it, bounded), then hands the fetch to git's own HTTP
transport with the student's hub token in an environment-only `http.extraHeader` scoped
to the f2git origin.
"""
