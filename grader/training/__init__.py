"""The homework's experiment, run by the grader (parent process; the student's run goes
through the sandbox): data.py finds, decodes and caches CIFAR-10; lenet.py is the LeNet-5
harness (model and loop, also mounted in the sandbox); stage.py runs no-BN, reference-BN and
student-BN LeNet-5, caches the baselines, verifies the student's trained state itself and turns
the runs into check outcomes; packed.py takes the baselines from a check pack instead."""
