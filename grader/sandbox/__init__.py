"""The trust boundary.

zygote.py  parent side: forks a clean "zygote" right after `import torch`, before the parent
           loads the reference or computes anything; the zygote forks one worker per
           submission, so a worker never pays the torch import and never sees the answer.
child.py   worker side: loads the student's file and answers requests. The only module that
           ever runs student code.
wire.py    both sides: length-prefixed messages of plain tensors and primitives
           (torch.save / torch.load(weights_only=True); never a general pickle).
"""
