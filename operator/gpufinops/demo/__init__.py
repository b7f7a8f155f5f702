"""The live local demo (``gpufinops demo``, ``make run``).

Fake vLLM model servers whose metrics come from a queue model fed by a
replayed real trace (:mod:`.loadgen`, :mod:`.queue`, :mod:`.shape`), a stand-in
node autoscaler for the local cluster (:mod:`.provisioner`), the operator as a
child process (:mod:`.operator_process`) and a terminal view of what it does
(:mod:`.collect`, :mod:`.view`, :mod:`.screen`), tied together by :mod:`.session`.

It sits above ``sim`` (it replays traces with ``sim.traces``) and below ``cli``.
"""
