"""The benchmark CI gate (issue 13, part 3): fstore's hot kernels and its server, each as a
ratio to a floor measured in the same run, checked against benchmarks/gate.toml.

Run ``python -m benchmarks.gate`` from the repository root (docs/benchmarks.md, "Benchmark gate").
"""
