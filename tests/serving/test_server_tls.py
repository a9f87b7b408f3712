"""eegfm-serve over HTTPS (--tls_certfile/--tls_keyfile): a client that trusts the certificate gets
answers, plain HTTP gets none, and unusable TLS files are refused before the model loads."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from eegfm.serving.server import make_server
from tests.serving.serve_helpers import serving


def _self_signed(folder, name: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by its own key: (certificate path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eegfm-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_https_answers_a_client_that_trusts_the_certificate_and_plain_http_gets_nothing(finetuned, tmp_path):
    cert, key = _self_signed(tmp_path, "server")
    with serving(["--model", str(finetuned), "--no-auth", "--tls_certfile", cert, "--tls_keyfile", key]) as running:
        trusting = ssl.create_default_context(cafile=cert)
        connection = http.client.HTTPSConnection(running.host, running.port, context=trusting, timeout=30)
        connection.request("GET", "/health")
        reply = connection.getresponse()
        assert reply.status == 200 and connection.sock.version() in ("TLSv1.2", "TLSv1.3")
        connection.close()

        untrusting = http.client.HTTPSConnection(running.host, running.port, timeout=30)
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.request("GET", "/health")

        plain = http.client.HTTPConnection(running.host, running.port, timeout=30)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("GET", "/health")
            plain.getresponse()


@pytest.mark.parametrize("which", ["only_cert", "mismatched_key", "missing_file"])
def test_unusable_tls_files_are_refused_naming_them(finetuned, tmp_path, capsys, which):
    cert, key = _self_signed(tmp_path, "server")
    _, other_key = _self_signed(tmp_path, "other")
    argv = {
        "only_cert": ["--tls_certfile", cert],
        "mismatched_key": ["--tls_certfile", cert, "--tls_keyfile", other_key],
        "missing_file": ["--tls_certfile", str(tmp_path / "absent.crt"), "--tls_keyfile", key],
    }[which]
    with pytest.raises(SystemExit):
        make_server(["--model", str(finetuned), "--no-auth", "--port", "0", *argv])
    error = capsys.readouterr().err
    expected = "expected both" if which == "only_cert" else "expected a PEM certificate and its private key"
    assert expected in error and "--tls_certfile" in error
    if which != "only_cert":
        assert argv[1] in error
