"""The sandbox's side of the trust boundary (sandboxed zygote and worker processes): mounted
read-only in the sandbox, it imports nothing else of the grader (tests/test_layering.py); the
grader takes only the message format (wire.py) from it. See grader/sandbox/__init__.py."""
