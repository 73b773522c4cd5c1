"""The one Certificate type: what it certifies, how, and its factors."""

import pytest

from contractive_keras.bounds import certificate


def test_product_of_factors_and_summary():
    cert = certificate.product([("a", "dense", 2.0), ("b", "ode block", 0.5)], "map")
    assert cert.value == 1.0 and cert.method == "upper"
    assert [f.name for f in cert.factors] == ["a", "b"]
    name, kind, value = cert.factors[0]
    assert (name, kind, value) == ("a", "dense", 2.0)
    assert cert.summary()["lipschitz_bound"] == 1.0 and float(cert) == 1.0


@pytest.mark.parametrize("kwargs,match", [(dict(certifies="estimate"), "certifies"),
                                          (dict(method="lower"), "method")])
def test_refuses_what_is_not_a_certificate(kwargs, match):
    arguments = dict(value=1.0, certifies="map", method="upper")
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        certificate.Certificate(**arguments)


def test_details_are_read_only():
    cert = certificate.Certificate(1.0, "flow", "exact", details={"delta": 0.0})
    with pytest.raises(TypeError):
        cert.details["delta"] = 1.0
