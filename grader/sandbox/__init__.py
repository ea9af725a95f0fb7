"""The trust boundary: the only way student code runs (grader side here; inside/ in the sandbox).

engine.py   bubblewrap: the sandbox's command line, what exists inside it (grader process)
zygote.py   the grader's side: starts one warm zygote in the sandbox, hands out sessions (one
            worker per submission; open_loaded(): a worker that loaded it, or LoadFailed),
            deadlines both ways, what the results record (grader process)
spawned.py  a fresh interpreter per worker, no fork and no namespaces: Windows, macOS, and
            Linux by choice; unconfined, and said so (grader process)
inside/     runs in the sandbox: zygote.py (forks workers), worker.py (namespaces, limits, the
            only code that runs student code), handlers.py (requests), placeholders.py
            (missing packages), spawned.py (the spawned worker's entry), wire.py (messages:
            a JSON header and raw tensor bytes, never a pickle; also used by the grader)
"""
