"""The facts the docs state by hand that the code, the pipeline or the manifests can state too:
each read from both places and compared. (The tables the code can write, `make docs` writes:
tests/test_docs.py. The refusal reasons of docs/observability.md: tests/infra/test_monitoring.py.)
"""

from __future__ import annotations

import re
import shlex

import pytest
import yaml
from support.server import REPO

from chaos_pyfunc.contract import request_body, schema
from chaos_pyfunc.contract.answers import CONTENT_TYPE_MESSAGE
from chaos_pyfunc.http import edge

DOCS = REPO / "docs"


def doc(name: str) -> str:
    return (DOCS / name).read_text()


def test_the_docs_name_the_signature_type_of_the_integer_columns() -> None:
    """The MLflow signature declares the whole-number columns long (a Python caller passes pandas'
    int64 as it is): the docs say so, and never double."""
    declared = {spec.type.name for spec in schema.signature().inputs.inputs if spec.name in schema.INTEGERS}
    assert declared == {"long"}
    said = re.findall(r"signature\s+declares them `(\w+)`", doc("api.md"))
    said += re.findall(r"integer columns are declared `(\w+)`", doc("model-lifecycle.md"))
    assert said and set(said) == declared
    for text in [(REPO / "README.md").read_text(), *(path.read_text() for path in DOCS.glob("*.md"))]:
        assert not re.search(r"declare[sd]? (them|the \w+ columns) `double`", text)


def _marker_expression(text: str) -> str:
    (expression,) = re.findall(r'-m "([^"]+)"', text)
    return expression


def test_docs_testing_quotes_the_markers_of_the_gitlab_unit_tests_job() -> None:
    pipeline = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    job = _marker_expression(" ".join(pipeline["unit-tests"]["script"]))
    (paragraph,) = [p for p in doc("testing.md").split("\n\n") if "`unit-tests` job runs" in p]
    assert _marker_expression(paragraph) == job


NETWORK_POLICY = yaml.safe_load((REPO / "k8s" / "base" / "networkpolicy.yaml").read_text())


def _ports(rules: list[dict]) -> list[set[int]]:
    return [{port["port"] for port in rule["ports"]} for rule in rules]


def test_docs_deploy_names_the_ports_the_network_policy_lets_in() -> None:
    sentence = re.search(r"the pod accepts traffic only on (.*?);", doc("deploy.md"), re.S)
    assert sentence is not None
    named = {int(port) for port in re.findall(r"TCP (\d+)", sentence.group(1))}
    assert named == set().union(*_ports(NETWORK_POLICY["spec"]["ingress"]))


def test_docs_deploy_has_a_row_per_egress_rule_of_the_network_policy() -> None:
    text = doc("deploy.md")
    table = text[text.index("| to | port | why |"):].split("\n\n")[0].splitlines()[2:]
    rows = [{int(port) for port in re.findall(r"\d+", row.split(" | ")[1])} for row in table]
    assert rows == _ports(NETWORK_POLICY["spec"]["egress"])


SECRETS_SH = (REPO / "k8s" / "secrets.sh").read_text()


def test_docs_deploy_quotes_the_usage_of_secrets_sh() -> None:
    """The usage lines secrets.sh prints (its header's lines 3 to 12) are quoted as they are."""
    header = SECRETS_SH.splitlines()[2:12]
    usage = [line.lstrip("# ").strip() for line in header if line.lstrip("# ").startswith("k8s/secrets.sh ")]
    assert len(usage) == 2
    for line in usage:
        assert f"`{line}`" in doc("deploy.md"), line


def _calls(text: str) -> list[list[str]]:
    """The secrets.sh command lines of a document's shell blocks, as arguments (without --apply)."""
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    calls = [shlex.split(line.split("#")[0].split("k8s/secrets.sh", 1)[1]) for line in lines
             if "k8s/secrets.sh " in line]
    return [[arg for arg in call if arg != "--apply"] for call in calls]


def test_the_secrets_sh_calls_of_docs_deploy_have_the_arguments_it_needs() -> None:
    calls = _calls(doc("deploy.md"))
    assert {call[0] == "registry" for call in calls} == {True, False}
    for call in calls:
        assert len(call) == (2 if call[0] == "registry" else 4), call


def test_docs_deploy_names_the_keys_of_the_app_secret() -> None:
    created = set(re.findall(r"--from-file=([\w.-]+)=", SECRETS_SH)) - {".dockerconfigjson"}
    (named,) = re.findall(r"`chaos-secrets-<env>` \(keys ([^)]*)\)", doc("deploy.md"))
    assert set(re.findall(r"`([\w.-]+)`", named)) == created


@pytest.mark.parametrize("message", [request_body.A_JSON_STRING, request_body.NOT_AN_OBJECT,
                                     request_body.ONE_CUSTOMER, edge.TOO_MANY_CONNECTIONS,
                                     CONTENT_TYPE_MESSAGE],
                         ids=["json_string", "not_an_object", "one_customer", "connections", "content_type"])
def test_docs_api_quotes_the_servers_messages(message: str) -> None:
    assert f"`{message}`" in doc("api.md")
