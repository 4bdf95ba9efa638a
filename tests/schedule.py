"""How ``make test`` shares the tests between its two workers: longest first.

pytest-xdist's ``--dist loadscope`` hands out whole modules (a module's fixtures are made once), in
order of their number of tests. On two cores the suite's time is that of the busier worker, so a long
module handed out last leaves the other core idle for minutes. Here the modules go out longest first
(the classic longest-processing-time rule), by the seconds each took in a measured run, and the few
modules whose tests share no module fixture are cut into one unit per test, so that no single unit
is a large share of the whole.

The seconds only order the work: a stale figure makes the suite slower, never wrong.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# Modules whose tests share no module-scoped fixture: each test is a unit of its own.
CUT = ("tests/test_applications.py", "tests/test_bench.py")

# Seconds a unit took (``pytest -p no:xdist --durations=0``, the 2-core machine, 2026-12-07, while other
# jobs shared it: what counts is their order). Session fixtures count where they were first asked for.
SECONDS = {
    "tests/test_render.py": 408,
    "tests/test_examples.py": 289,
    "tests/test_generate.py": 208,
    "tests/test_slurm.py": 192,
    "tests/test_shards.py": 189,
    "tests/test_a11y.py": 125,
    "tests/test_models.py": 63,
    "tests/test_trust.py": 62,
    "tests/test_classes.py": 51,
    "tests/test_browser.py": 46,
    "tests/test_accentuation.py": 40,
    "tests/test_publish.py": 37,
    "tests/test_store.py": 30,
    "tests/test_site.py": 23,
    "tests/test_cli.py": 18,
    "tests/test_bench.py::test_bench_gpu_reduced_runs_on_the_cpu": 138,
    "tests/test_bench.py::test_bench_trust_reports_each_score_for_both_methods": 29,
    "tests/test_bench.py::test_bench_site_builds_a_synthetic_atlas_and_reuses_a_kept_one": 22,
    "tests/test_applications.py::test_the_transfer_learning_pattern_end_to_end": 45,
    "tests/test_applications.py::test_a_zoo_network_with_labels_gets_its_classifier": 36,
}
APPLICATION = "tests/test_applications.py::test_a_keras_application_saved_as_a_file_is_listed_rendered_and_examined"
UNKNOWN = 1.0  # seconds a test of a unit not measured above


def seconds(unit: str, tests: int) -> float:
    """What ``unit`` is expected to take: its measured seconds, else a keras.applications network's
    (about 40 s each), else ``UNKNOWN`` a test."""
    if unit in SECONDS:
        return SECONDS[unit]
    if unit.startswith(APPLICATION + "["):
        return 40.0
    return UNKNOWN * tests


class LongestFirst(LoadScopeScheduling):
    """``loadscope``, with modules of ``CUT`` cut into single tests and the units handed out longest first."""

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.split("::", 1)[0] in CUT:
            return nodeid
        return super()._split_scope(nodeid)

    def _assign_work_unit(self, node) -> None:
        # the queue is complete before the first unit goes out: put it in our order then, once
        if not getattr(self, "_longest_first", False):
            self._longest_first = True
            units = sorted(self.workqueue.items(), key=lambda item: -seconds(item[0], len(item[1])))
            self.workqueue.clear()
            self.workqueue.update(units)
        super()._assign_work_unit(node)
