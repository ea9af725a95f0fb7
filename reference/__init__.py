"""The course's reference BatchNorm2d (batchnorm.py): the answer. Trusted; imported only in the
grader's process (training baselines, computed expected values, the pack maker). The sandbox
cannot see this folder, and the student edition does not ship it."""
