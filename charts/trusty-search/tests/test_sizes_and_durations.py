#!/usr/bin/env python3
"""Sizes and durations as the chart reads them, against what Kubernetes and
the binaries accept (run by scripts/check-chart.sh):

* scripts/chart_tool.py `seconds()` (humantime, as src/server/flags.rs
  parse_duration) and `quantity_bytes()` (Kubernetes quantities), which the
  policy checks apply to rendered values;
* the chart's `trusty-search.bytes` helper and values.schema.json, through
  real renders: a memory limit or a size limit in any Kubernetes quantity
  form must render, and with the value it means.
"""
from __future__ import annotations

import copy
import importlib.util
import math
import os
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "chart_tool", os.path.join(HERE, "..", "..", "..", "scripts", "chart_tool.py"))
chart_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chart_tool)

MI = 2**20
GI = 2**30
# Every Kubernetes quantity form, with its value in bytes.
QUANTITIES = [
    ("2Gi", 2 * GI),
    ("1.5G", 1.5e9),
    ("10496Mi", 10496 * MI),
    ("129e6", 129e6),
    ("1.5E3", 1500),
    ("1e+3", 1000),
    ("5E-1", 0.5),
    ("2E", 2e18),  # E alone is exa
    ("1Ei", 2**60),
    (".5Gi", GI / 2),
    ("1.", 1),
    ("+1Ki", 1024),
    ("500m", 0.5),
    ("2000000u", 2),
    ("3000000000n", 3),
    ("7", 7),
]
NOT_QUANTITIES = ["", "1e", "E3", "e3", "1.5.5", "12XB", "1 e3", "Gi", "1ee3", "1e3.5", "0x10", "1E3Ki",
                  "1KiB", "1GB", ".", "2 Gi", "1,5Gi"]
# humantime::parse_duration: what the binaries' duration flags accept.
DURATIONS = [
    ("0", 0),
    ("30s", 30),
    ("90sec", 90),
    ("1m30s", 90),
    ("2min", 120),
    ("500ms", 0.5),
    ("1h", 3600),
    ("1h 30m", 5400),
    ("1hour 12min 5s", 4325),
    ("4.2s", 4.2),
    ("1.5h", 5400),
    ("30 s", 30),
    ("2days", 172800),
    ("1w", 604800),
    ("250us", 0.00025),
    ("250\u00b5s", 0.00025),
    ("10ns", 1e-8),
    ("1M", 2630016),
    ("1y", 31557600),
    ("0s", 0),
    (" 5s ", 5),
]
NOT_DURATIONS = ["", "90", "00", "soon", "1.s", "1.5ns", "-1s", "1x", "s", "1m30", "1,5s", "+1s", "1h,30m",
                 "1.0000001h", "99999999999999999999s"]


class Parsers(unittest.TestCase):
    def test_quantities(self):
        for text, want in QUANTITIES:
            with self.subTest(text):
                self.assertAlmostEqual(chart_tool.quantity_bytes(text), want, delta=want * 1e-12)
        self.assertEqual(chart_tool.quantity_bytes(805306368), 805306368.0)
        self.assertEqual(chart_tool.quantity_bytes("1e400"), chart_tool.QUANTITY_MAX, "Kubernetes caps at 2^63-1")

    def test_junk_quantities_are_refused_naming_them(self):
        for text in NOT_QUANTITIES:
            with self.subTest(text):
                with self.assertRaises(chart_tool.CannotRead) as e:
                    chart_tool.quantity_bytes(text)
                self.assertIn(repr(text), str(e.exception))

    def test_durations(self):
        for text, want in DURATIONS:
            with self.subTest(text):
                self.assertAlmostEqual(chart_tool.seconds(text), want, places=9)

    def test_junk_durations_are_refused_naming_them(self):
        for text in NOT_DURATIONS:
            with self.subTest(text):
                with self.assertRaises(chart_tool.CannotRead) as e:
                    chart_tool.seconds(text)
                self.assertIn(repr(text), str(e.exception))


def base_values() -> dict:
    return chart_tool.load_values_file(os.path.join(chart_tool.CHART_DIR, "ci", "default-values.yaml"))


def render(overrides: dict) -> list[dict]:
    values = chart_tool.deep_merge(base_values(), overrides)
    return [d for _, d in chart_tool.helm_render(values, name="trusty-search", namespace="trusty-search",
                                                 kube_version=None, api_versions=[], include_crds=False)]


def render_error(overrides: dict) -> str:
    try:
        render(overrides)
    except Exception as e:  # helm's error, as `helm install` would print it
        return str(e)
    raise AssertionError(f"rendered with {overrides}")


def shard(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "StatefulSet")


class Chart(unittest.TestCase):
    def test_size_limits_in_any_quantity_form_render_with_their_value(self):
        # The shard requests its emptyDirs as ephemeral-storage: tmp + cache,
        # in whole Mi rounded up, read by the chart's bytes helper.
        cache = 10 * GI
        for text, want in QUANTITIES:
            with self.subTest(text):
                docs = render({"tmpSizeLimit": text, "shard": {"cache": {"sizeLimit": "10Gi"}}})
                requests = shard(docs)["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
                self.assertEqual(requests["ephemeral-storage"], f"{math.ceil((want + cache) / MI)}Mi")
                # The policy checks read the rendered size limit too.
                self.assertEqual(chart_tool.policy_errors(docs), [])

    def test_memory_limits_in_any_quantity_form_are_read_as_what_they_mean(self):
        # The default memoryBudget (768Mi) needs a limit of 2 x 768Mi + 300Mi.
        needed = 2 * 768 * MI + 300 * MI
        for text, fits in [("1.93e9", True), ("1.92e9", False), ("2E", True), ("2E3", False), ("1Ei", True),
                           (".5Ei", True), ("+2Gi", True), ("1.5E3", False), (f"{needed}", True),
                           (f"{needed - 1}", False), ("1836Mi", True), ("1835Mi", False)]:
            with self.subTest(text):
                overrides = {"shard": {"resources": {"limits": {"memory": text}}}}
                if fits:
                    limits = shard(render(overrides))["spec"]["template"]["spec"]["containers"][0]["resources"]
                    self.assertEqual(limits["limits"]["memory"], text)
                else:
                    error = render_error(overrides)
                    self.assertIn(f"does not fit shard.resources.limits.memory {text}", error)

    def test_junk_sizes_are_refused_naming_the_value(self):
        for text in ["12XB", "1e", "E3", "-2Gi", "1E3Ki"]:
            with self.subTest(text):
                error = render_error({"shard": {"resources": {"limits": {"memory": text}}}})
                self.assertIn(text, error)
                self.assertIn("shard/resources/limits/memory", error.replace(".", "/"))

    def test_unquoted_exponents_are_numbers_as_helm_reads_them(self):
        # go-yaml reads 5e-1 and 2.5e9 as floats (PyYAML as strings): the
        # schema must take them, and a negative number must still be refused.
        import io
        values = chart_tool.yaml.load(io.StringIO("a: 5e-1\nb: 2.5e9\nc: 512\nd: 2Gi\ne: -1.5e3\n"),
                                      Loader=chart_tool.HelmValuesLoader)
        self.assertEqual(values, {"a": 0.5, "b": 2.5e9, "c": 512, "d": "2Gi", "e": -1500.0})
        requests = shard(render({"shard": {"resources": {"requests": {"cpu": 0.5, "memory": 1.5e9}}}}))
        got = requests["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        self.assertEqual((float(got["cpu"]), float(got["memory"])), (0.5, 1.5e9))
        error = render_error({"shard": {"resources": {"limits": {"memory": -2.0e9}}}})
        self.assertIn("shard/resources/limits/memory", error.replace(".", "/"))

    def test_duration_values_take_what_the_binaries_read(self):
        # The schema's pattern for durations passed to the binaries follows
        # humantime, so every form parse_duration takes renders, and a bare
        # number or an unknown unit is refused before any pod starts.
        for text in ["90s", "90sec", "1m 30s", "1m30s", "1.5h", "2 min", "500ms"]:
            with self.subTest(text):
                self.assertGreater(chart_tool.seconds(text), 0)
                cms = [d for d in render({"shard": {"loadTimeout": text, "embedTimeout": text},
                                          "operator": {"resync": text}}) if d["kind"] == "ConfigMap"]
                env = {k: v for cm in cms for k, v in (cm.get("data") or {}).items()}
                self.assertEqual((env["TRUSTY_LOAD_TIMEOUT"], env["TRUSTY_EMBED_TIMEOUT"], env["TRUSTY_RESYNC"]),
                                 (text, text, text))
        for text in ["90", "soon", "1x", "-1s", "1m30"]:
            with self.subTest(text):
                for overrides in ({"shard": {"loadTimeout": text}}, {"operator": {"resync": text}}):
                    error = render_error(overrides)
                    self.assertIn("Timeout" if "shard" in overrides else "resync", error)

    def test_request_timeouts_are_read_as_the_binaries_read_them(self):
        # Router: grace 80 s >= preStop 5 s + timeout + 10 s (MCP), so 65 s fits and 66 s does not.
        def errors(timeout: str) -> list[str]:
            env = [{"name": "TRUSTY_REQUEST_TIMEOUT", "value": timeout}]
            docs = render({"router": {"extraEnv": copy.deepcopy(env)}})
            return [e for e in chart_tool.policy_errors(docs) if "TRUSTY_REQUEST_TIMEOUT" in e or "terminationGracePeriodSeconds" in e]

        for fits in ["1min 5sec", "65s", "1m5s", "65000ms"]:
            with self.subTest(fits):
                self.assertEqual(errors(fits), [])
        for too_long in ["1min 6sec", "66s", "1.1min"]:
            with self.subTest(too_long):
                self.assertTrue(any("request timeout 76 s" in e for e in errors(too_long)), errors(too_long))
        junk = errors("soon")
        self.assertTrue(any("cannot read 'soon' as a duration" in e for e in junk), junk)


if __name__ == "__main__":
    unittest.main(verbosity=1)
