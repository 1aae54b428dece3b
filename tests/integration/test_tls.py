"""The local stack's TLS: nginx serves a leaf certificate (not a CA) signed by the local CA
named by RUNFEED_CA_CERT, as rustls/WebPKI clients require (a CA certificate used as the
server's own is rejected with CaUsedAsEndEntity)."""

import re
import shutil
import socket
import ssl
import subprocess
from urllib.parse import urlsplit

import pytest
import requests

from conftest import CA_CERT, HTTPS_URL

pytestmark = pytest.mark.skipif(
    not (HTTPS_URL and CA_CERT), reason="RUNFEED_URL / RUNFEED_CA_CERT not set"
)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")


def _port():
    return urlsplit(HTTPS_URL).port or 443


def _served_chain_pem():
    """The PEM certificates nginx sends, leaf first (openssl s_client -showcerts)."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{_port()}", "-servername", "localhost",
         "-showcerts"],
        input=b"", capture_output=True, timeout=20,
    ).stdout.decode()
    certs = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    assert certs, f"no certificate from s_client: {out[:500]}"
    return certs


def _x509_text(pem=None, path=None):
    args = ["openssl", "x509", "-noout", "-text"]
    if path:
        args += ["-in", path]
    return subprocess.run(args, input=pem.encode() if pem else None, capture_output=True,
                          check=True, timeout=10).stdout.decode()


def _basic_constraints(text):
    m = re.search(r"X509v3 Basic Constraints:.*?\n\s*(CA:\w+)", text)
    assert m, "no basicConstraints extension:\n" + text
    return m.group(1)


@needs_openssl
def test_served_certificate_is_a_leaf():
    text = _x509_text(pem=_served_chain_pem()[0])
    assert _basic_constraints(text) == "CA:FALSE"
    assert "TLS Web Server Authentication" in text
    assert "Digital Signature" in text and "Key Encipherment" in text
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text


@needs_openssl
def test_ca_is_a_ca():
    text = _x509_text(path=CA_CERT)
    assert _basic_constraints(text) == "CA:TRUE"
    assert "Certificate Sign" in text


@needs_openssl
def test_served_certificate_is_not_the_ca():
    leaf = _x509_text(pem=_served_chain_pem()[0])
    ca = _x509_text(path=CA_CERT)
    serial = lambda t: re.search(r"Serial Number:\s*\n?\s*([0-9a-f:]+)", t).group(1)
    assert serial(leaf) != serial(ca)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verifies_against_ca_with_ssl(host):
    ctx = ssl.create_default_context(cafile=CA_CERT)
    ctx.check_hostname = True
    with socket.create_connection(("127.0.0.1", _port()), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            cert = tls.getpeercert()
            assert cert, "no peer certificate"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_requests_verify_with_ca(host):
    url = f"https://{host}:{_port()}/"
    r = requests.get(url, verify=CA_CERT, timeout=10)
    assert r.status_code > 0  # any answer: the TLS handshake verified


def test_not_trusted_without_the_ca():
    # The chain ends at the local CA, not at a system-trusted one.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{_port()}/", timeout=10)
