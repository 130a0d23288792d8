"""The load test's p50 / p95 table in pytest's terminal summary (no ``-s`` needed): the test
records it with ``record_property("load_table", ...)``."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "load_table" and getattr(report, "when", "") == "call":
                    terminalreporter.section(f"load: {report.nodeid}")
                    for line in str(value).splitlines():
                        terminalreporter.write_line(line)
