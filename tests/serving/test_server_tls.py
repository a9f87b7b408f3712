"""eegfm-serve over HTTPS (--tls_certfile/--tls_keyfile): a client that trusts the certificate gets
answers, plain HTTP gets none, and unusable TLS files are refused before the model loads."""

from __future__ import annotations

import http.client
import ssl

import pytest

from eegfm.serving.server import make_server
from tests.serving.serve_helpers import self_signed_certificate, serving


def test_https_answers_a_client_that_trusts_the_certificate_and_plain_http_gets_nothing(finetuned, tmp_path):
    cert, key = self_signed_certificate(tmp_path, "server")
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
    cert, key = self_signed_certificate(tmp_path, "server")
    _, other_key = self_signed_certificate(tmp_path, "other")
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
