"""pnnc's encrypted-execution runner: runs a pnnc HE circuit under OpenFHE CKKS.

Modules: `circuit` (load and validate the circuit JSON), `plain` (float64
reference evaluation), `ckks` (OpenFHE context, BSGS matvec, Chebyshev series
with exact depth), `run` (the command line: encrypt, evaluate, report).
"""
