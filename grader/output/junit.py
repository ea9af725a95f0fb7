"""JUnit XML for CI test tabs (parent process): one testsuite per submission, one testcase per
check. ElementTree escapes everything a submission controls."""
import os
import xml.etree.ElementTree as ET

from grader.output.files import write_atomic


def to_xml(results) -> bytes:
    root = ET.Element("testsuites", name="bn-grade")
    for r in results:
        graded = [s for s in r.checks if not s.advisory]
        failures = sum(1 for s in graded if not s.passed)
        suite = ET.SubElement(root, "testsuite", name=r.student or os.path.basename(r.submission),
                              tests=str(len(graded)), failures=str(failures), errors="0",
                              skipped=str(len(r.not_run)), time=f"{r.seconds:.3f}")
        props = ET.SubElement(suite, "properties")
        for k, v in (("score", f"{r.score:g}"), ("max_score", f"{r.max_score:g}"), ("status", r.status.value),
                     ("seed", str(r.facts.seed)), ("torch", r.facts.torch_version), ("device", r.facts.device),
                     ("rubric_hash", r.facts.rubric_hash), ("submission_hash", r.submission_hash)):
            ET.SubElement(props, "property", name=k, value=v)
        for s in graded:
            case = ET.SubElement(suite, "testcase", classname=suite.get("name"), name=s.outcome.check_id,
                                 time="0")
            if not s.passed:
                text = s.outcome.message if s.visibility != "hidden" else "failed"
                f = ET.SubElement(case, "failure", message=(text.splitlines() or ["failed"])[0][:500])
                f.text = text
        for what, why in r.not_run:
            case = ET.SubElement(suite, "testcase", classname=suite.get("name"), name=what, time="0")
            ET.SubElement(case, "skipped", message=why)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write(results, path) -> None:
    write_atomic(path, to_xml(results))
