"""Everything a person or a tool reads: the terminal summary and details, the JSON
report, markdown and junitxml, all rendered from :class:`pytest_energy.entry.Entry`
through one formatting layer (:mod:`pytest_energy.report.cells`)."""
