"""The homework's experiment, run by the grader (parent process; the student's run goes
through the sandbox): data.py finds, decodes and caches CIFAR-10; stage.py runs no-BN,
reference-BN and student-BN LeNet-5 (reference/lenet.py), caches the baselines, verifies the
student's trained state itself and turns the runs into check outcomes."""
