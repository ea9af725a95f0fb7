"""The course's reference BatchNorm. Trusted: imported only by the grader's parent process,
never by the sandboxed child (the child must not be able to borrow the answer)."""
