"""The source of a counting meter for pytester runs: ``pytester.makepyfile(
counting_meter=COUNTING_METER)``, then ``--energy-meter=counting_meter:CountingMeter``.

Every read advances 1 mJ: enough for a run to be measured, rated and saved, with no
clock in the numbers. Kept as text because it runs inside the pytester's project.
"""

COUNTING_METER = '''
TOTAL = [0.0]


class CountingMeter:
    """Every read advances 1 mJ: enough for a run to be measured and saved."""

    name = "counting"
    estimated = False
    update_period_s = 0.0

    def domains(self):
        return ["count:0"]

    def read(self):
        TOTAL[0] += 1e-3
        return {"count:0": TOTAL[0]}

    def close(self):
        pass
'''
