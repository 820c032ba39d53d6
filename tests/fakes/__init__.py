"""Simulated hardware for the meter tests: a fake ``pynvml`` and a fake powercap tree.

The machines that run the test-suite have no GPU, no NVIDIA driver and no RAPL
counters, so the meters are exercised against these. They mirror the real interfaces
(names, signatures, error classes, sysfs layout) closely enough that the meters'
real code paths run unchanged; ``test_meter_nvml.py`` checks the fake against the real
``pynvml`` module when it is installed.
"""
