"""The results history and the regression gate.

* :mod:`~pytest_energy.history.storage` (with :mod:`.schema`, :mod:`.sqlite`,
  :mod:`.runs`): the SQLite history of runs and their entries;
* :mod:`~pytest_energy.history.metrics`, :mod:`.stats`, :mod:`.compare`: the compare
  verdict (thresholds AND a one-sided Mann-Whitney U test);
* :mod:`~pytest_energy.history.machine`: machine fingerprints and meter identities;
* :mod:`~pytest_energy.history.suggest`: budget suggestions from the history;
* :mod:`~pytest_energy.history.gate`: the :class:`RegressionGate` the plugin runs at
  session end, configured by :mod:`.gate_config`, finding its baseline with
  :mod:`.baseline`, the commit with :mod:`.git`, and wording it all in :mod:`.gate_text`.

This ``__init__`` imports nothing: the option parsers import :mod:`.metrics` and
:mod:`.runs` on every pytest run, and must not pay for SQLite or the gate.
"""
