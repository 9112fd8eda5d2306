from __future__ import annotations

from typing import Any

import pytest

import medchain
from medchain import Consent, Identity, evaluate
from medchain.testing import DemoNetwork, research_consent


def test_consent_fhir_round_trip() -> None:
    alice = Identity.generate()
    c = research_consent(alice, "diabetes")
    fhir = c.to_fhir()
    assert fhir["resourceType"] == "Consent"
    again = Consent.from_fhir(fhir)
    assert again == c and again.id == c.id and hash(again) == hash(c)
    assert c.patient == alice.public
    assert "diabetes" in c.summary
    assert c.provision_count == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"resourceType": "Observation", "status": "final", "code": {}},
        {"resourceType": "Consent", "status": "inactive"},
        {"resourceType": "Consent", "status": "active"},
    ],
)
def test_not_a_consent(bad: Any) -> None:
    with pytest.raises((medchain.InvalidConsent, medchain.NotFhir)):
        Consent.from_fhir(bad)


def test_consent_garbage() -> None:
    with pytest.raises(medchain.NotFhir):
        Consent.from_fhir("{{{")
    with pytest.raises(medchain.WrongType):
        Consent.from_fhir(3.5)  # type: ignore[arg-type]


def test_evaluate_research_permit_and_denials() -> None:
    alice, researcher, inst = Identity.generate(), Identity.generate(), Identity.generate()
    c = research_consent(alice, "diabetes")
    ok = evaluate([c], researcher, action="research", purpose="HRESCH", topic="diabetes",
                  role="researcher", institution=inst)
    assert ok.permitted and ok.kind == "permit" and ok and ok.consent_id == c.id
    ok.raise_if_denied()
    no_role = evaluate([c], researcher, action="research", purpose="HRESCH", topic="diabetes")
    assert not no_role.permitted and no_role.kind == "deny"
    with pytest.raises(medchain.ConsentDenied):
        no_role.raise_if_denied()
    other_topic = evaluate([c], researcher, action="research", purpose="HRESCH", topic="oncology",
                           role="researcher", institution=inst)
    assert not other_topic
    read = evaluate([c], researcher, action="read", purpose="TREAT", role="clinician", institution=inst)
    assert not read.permitted
    assert not evaluate([], researcher).permitted


def test_evaluate_bad_arguments() -> None:
    c = research_consent(Identity.generate(), None)
    r = Identity.generate()
    with pytest.raises(medchain.InvalidArgument):
        evaluate([c], r, action="destroy")
    with pytest.raises(medchain.InvalidArgument):
        evaluate([c], r, role="researcher")
    with pytest.raises(medchain.InvalidArgument):
        evaluate([c], r, role="wizard", institution=r)
    with pytest.raises(medchain.WrongType):
        evaluate(c, r)  # type: ignore[arg-type]
    with pytest.raises(medchain.WrongType):
        evaluate(["x"], r)  # type: ignore[list-item]
    with pytest.raises(medchain.InvalidArgument):
        evaluate([c], r, now_ms=-1)


def test_revoked_consent_denies(ledger: medchain.Ledger, demo: DemoNetwork) -> None:
    states = ledger.consents_of(demo.patients[1])
    assert len(states) == 1 and not states[0].active and states[0].revoked_at is not None
    d = evaluate(states, demo.researcher, action="research", purpose="HRESCH", topic="diabetes",
                 role="researcher", institution=demo.institution)
    assert not d.permitted
    assert "revoked" in d.reason.lower()
    # The same consent, not revoked, would permit.
    d2 = evaluate([states[0].consent], demo.researcher, action="research", purpose="HRESCH",
                  topic="diabetes", role="researcher", institution=demo.institution)
    assert d2.permitted


def test_grant_by_someone_else_is_refused(tmp_path: Any) -> None:
    from medchain.testing import LocalNetwork

    net = LocalNetwork(str(tmp_path / "n.sqlite"))
    alice, mallory = Identity.generate(), Identity.generate()
    with pytest.raises(medchain.MedchainError):
        net.grant(research_consent(alice, "x"), mallory)
    assert net.height == 0


def test_revoking_unknown_consent_writes_nothing(tmp_path: Any) -> None:
    from medchain.testing import LocalNetwork

    net = LocalNetwork(str(tmp_path / "n.sqlite"))
    alice = Identity.generate()
    net.revoke("ab" * 32, alice)
    with pytest.raises(medchain.ConsentDenied):
        net.commit()
    assert net.height == 0
    with pytest.raises(medchain.DecodeError):
        net.revoke("zz", alice)
