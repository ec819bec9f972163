"""PrometheusReader: chunk planning, parsing, retries, timeouts and auth (scripted server)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from openanomaly.adapters.metrics_reader.parse import parse_range_body
from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader, align, plan_chunks
from openanomaly.config.settings import TSDBSettings
from openanomaly.errors import OpenAnomalyError, TSDBQueryError, TSDBUnavailable
from tests.scripted_server import Reply, ScriptedServer, scripted_server

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def matrix(
    *series: tuple[dict[str, str], list[list[object]]], warnings: list[str] | None = None
) -> bytes:
    answer: dict[str, object] = {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": m, "values": v} for m, v in series]},
    }
    if warnings:
        answer["warnings"] = warnings
    return json.dumps(answer).encode()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as s:
        yield s


def reader(server: ScriptedServer, **settings: object) -> PrometheusReader:
    values = {"url": server.url, "retry": {"max_attempts": 3, "initial_backoff": "1ms"}, **settings}
    return PrometheusReader(TSDBSettings.model_validate(values), sleep=lambda _: None)


@pytest.mark.parametrize(
    ("start", "end", "step", "budget", "expected"),
    [
        (0, 0, 60, 10, [(0, 0)]),
        (0, 540, 60, 10, [(0, 540)]),  # exactly 10 points
        (0, 600, 60, 10, [(0, 540), (600, 600)]),  # 11 points
        (0, 1200, 60, 10, [(0, 540), (600, 1140), (1200, 1200)]),
        (60, 0, 60, 10, []),
        (0, 11 * 60, 60, 2, [(0, 60), (120, 180), (240, 300), (360, 420), (480, 540), (600, 660)]),
    ],
)
def test_plan_chunks(
    start: int, end: int, step: int, budget: int, expected: list[tuple[int, int]]
) -> None:
    chunks = plan_chunks(start, end, step, budget)
    assert chunks == expected
    points = [t for s, e in chunks for t in range(s, e + 1, step)]
    assert points == list(range(start, end + 1, step))  # every point exactly once
    assert all((e - s) // step + 1 <= budget for s, e in chunks)


def test_align_rounds_start_up_and_end_down() -> None:
    start = T0 + timedelta(seconds=61)
    end = T0 + timedelta(seconds=179)
    s, e, step = align(start, end, timedelta(minutes=1))
    assert (s - int(T0.timestamp() * 1000), e - int(T0.timestamp() * 1000), step) == (
        120_000,
        120_000,
        60_000,
    )


def test_parse_special_values_and_millisecond_timestamps() -> None:
    body = matrix(({"__name__": "m"}, [[1.5, "NaN"], [2.999, "+Inf"], [3, "-Inf"], [4, "1e-3"]]))
    result = parse_range_body(body)
    (key,) = result.labels
    assert result.timestamps[key].tolist() == [1500, 2999, 3000, 4000]
    values = result.values[key]
    assert np.isnan(values[0])
    assert values[1:].tolist() == [np.inf, -np.inf, 0.001]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "invalid JSON"),
        (
            json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": []}}
            ).encode(),
            "not a range vector",
        ),
        (json.dumps({"status": "error", "error": "boom"}).encode(), "boom"),
        (matrix(({"a": "1"}, [[1, "1"]]), ({"a": "1"}, [[2, "2"]])), "more than once"),
    ],
)
def test_parse_refuses_bad_answers(body: bytes, reason: str) -> None:
    with pytest.raises(TSDBQueryError, match=reason):
        parse_range_body(body)


def test_chunks_are_fetched_and_stitched(server: ScriptedServer) -> None:
    s0 = T0.timestamp()
    server.script = [  # the newest points first: they tell how many series there are
        Reply(
            body=matrix(
                ({"i": "a"}, [[s0 + 60 * k, str(k)] for k in range(2, 5)]),
                ({"i": "b"}, [[s0 + 240, "9"]]),
            )
        ),
        Reply(body=matrix(({"i": "a"}, [[s0 + 60 * k, str(k)] for k in range(0, 2)]))),
    ]
    frame = reader(server, max_points_per_request=3, read_concurrency=1).query_range(
        "q", T0, T0 + timedelta(minutes=4), timedelta(minutes=1)
    )
    forms = [seen.form for seen in server.seen]
    assert [(f["start"][0], f["end"][0]) for f in forms] == [
        (f"{s0 + 120:.3f}", f"{s0 + 240:.3f}"),
        (f"{s0:.3f}", f"{s0 + 60:.3f}"),
    ]
    assert (forms[0]["query"], forms[0]["step"], forms[0]["timeout"]) == (
        ["q"],
        ["60.000"],
        ["30s"],
    )
    assert frame.series_count == 2
    a = frame.data[frame.data.unique_id == '{i="a"}']
    assert a.y.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert frame.labels['{i="b"}'] == {"i": "b"}


def test_503_is_retried(server: ScriptedServer) -> None:
    server.script = [Reply(503, b"busy"), Reply(502, b"gateway")]
    server.default = Reply(body=matrix(({"x": "1"}, [[T0.timestamp(), "1"]])))
    frame = reader(server).query_range("q", T0, T0, timedelta(minutes=1))
    assert frame.series_count == 1
    assert len(server.seen) == 3


def test_retries_run_out(server: ScriptedServer) -> None:
    server.default = Reply(503, b"still busy")
    with pytest.raises(TSDBUnavailable, match=r"after 3 attempt.*HTTP 503: still busy"):
        reader(server).query_range("q", T0, T0, timedelta(minutes=1))


def test_bad_data_is_not_retried_and_keeps_the_message(server: ScriptedServer) -> None:
    error = "parse error at char 5: unclosed left parenthesis"
    server.default = Reply(
        400, json.dumps({"status": "error", "errorType": "bad_data", "error": error}).encode()
    )
    with pytest.raises(TSDBQueryError) as caught:
        reader(server).query_range("sum(", T0, T0, timedelta(minutes=1))
    assert str(caught.value).endswith(f"(HTTP 400): {error}")
    assert len(server.seen) == 1


def test_a_hung_server_is_cut_by_the_timeout(server: ScriptedServer) -> None:
    server.default = Reply(delay=5)
    started = time.monotonic()
    with pytest.raises(TSDBUnavailable, match="ReadTimeout"):
        reader(
            server, timeout="300ms", retry={"max_attempts": 2, "initial_backoff": "1ms"}
        ).query_range("q", T0, T0, timedelta(minutes=1))
    assert time.monotonic() - started < 3


def test_unreachable_server() -> None:
    settings = TSDBSettings.model_validate(
        {"url": "http://127.0.0.1:9", "retry": {"max_attempts": 2, "initial_backoff": "1ms"}}
    )
    with pytest.raises(TSDBUnavailable, match="ConnectError"):
        PrometheusReader(settings, sleep=lambda _: None).query_range(
            "q", T0, T0, timedelta(minutes=1)
        )


def test_warnings_are_logged(server: ScriptedServer, caplog: pytest.LogCaptureFixture) -> None:
    server.default = Reply(body=matrix(warnings=["partial response: store down"]))
    reader(server).query_range("q", T0, T0, timedelta(minutes=1))
    assert "partial response: store down" in caplog.text


def test_tenant_headers_and_basic_auth(server: ScriptedServer) -> None:
    server.default = Reply(body=matrix())
    reader(
        server, headers={"X-Scope-OrgID": "team-a"}, basic_auth={"username": "u", "password": "p"}
    ).query_range("q", T0, T0, timedelta(minutes=1))
    headers = server.seen[0].headers
    assert headers["x-scope-orgid"] == "team-a"
    assert headers["authorization"] == "Basic dTpw"
    assert headers["user-agent"].startswith("openanomaly/")
    assert headers["content-type"] == "application/x-www-form-urlencoded"


def test_bearer_token_file_is_reread_when_it_changes(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.default = Reply(body=matrix())
    token = tmp_path / "token"
    token.write_text("first\n")
    client = reader(server, bearer_token_file=str(token))
    client.query_range("q", T0, T0, timedelta(minutes=1))
    token.write_text("second-token\n")
    client.query_range("q", T0, T0, timedelta(minutes=1))
    assert [s.headers["authorization"] for s in server.seen] == [
        "Bearer first",
        "Bearer second-token",
    ]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ScriptedServer, Path, Path, Path]]:
    """The scripted server behind TLS with a test CA (trustme); yields the server, the CA file
    and a client certificate and key signed by the same CA."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("openanomaly-client", common_name="openanomaly-client")
    ca_file, cert_file, key_file = (
        tmp_path / "ca.pem",
        tmp_path / "client.pem",
        tmp_path / "client.key",
    )
    ca.cert_pem.write_to_path(str(ca_file))
    client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_pem.write_to_path(str(key_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_OPTIONAL  # so a test can see whether a client cert came
    with scripted_server(tls=context) as server:
        server.default = Reply(body=matrix())
        yield server, ca_file, cert_file, key_file


def test_tls_with_a_custom_ca_and_client_certificate(
    tls_server: tuple[ScriptedServer, Path, Path, Path],
) -> None:
    server, ca_file, cert_file, key_file = tls_server
    tls = {"ca_file": str(ca_file), "cert_file": str(cert_file), "key_file": str(key_file)}
    reader(server, tls=tls).query_range("q", T0, T0, timedelta(minutes=1))
    assert server.seen[0].client_cert_subject == "openanomaly-client"


def test_tls_refuses_an_unknown_ca_unless_told_to_skip(
    tls_server: tuple[ScriptedServer, Path, Path, Path],
) -> None:
    server, *_ = tls_server
    with pytest.raises(TSDBUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        reader(server, retry={"max_attempts": 1}).query_range("q", T0, T0, timedelta(minutes=1))
    reader(server, tls={"insecure_skip_verify": True}).query_range(
        "q", T0, T0, timedelta(minutes=1)
    )
    assert server.seen[-1].client_cert_subject is None


def test_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = TSDBSettings.model_validate({"tls": {"ca_file": str(tmp_path / "nope.pem")}})
    with pytest.raises(OpenAnomalyError, match=r"tsdb\.tls: cannot load certificates"):
        PrometheusReader(settings)


def test_a_range_whose_start_has_no_data_is_still_split_by_samples(
    server: ScriptedServer,
) -> None:
    """The series count comes from the newest points: a context reaching back before the
    data began must not turn into one giant answer (found at 10,000 series: one 100 MB body,
    ~1 GB to parse)."""
    s0 = T0.timestamp()
    end = s0 + 1199
    newest = [[end - k, "1"] for k in range(15, -1, -1)]
    server.script = [Reply(body=matrix(({"i": "a"}, newest), ({"i": "b"}, newest)))]
    server.script += [Reply(body=matrix()) for _ in range(3)]
    frame = reader(server, max_samples_per_request=1000, read_concurrency=1).query_range(
        "q", T0, T0 + timedelta(seconds=1199), timedelta(seconds=1)
    )
    spans = [(float(f.form["start"][0]), float(f.form["end"][0])) for f in server.seen]
    assert spans[0] == (end - 15, end)
    assert len(spans) == 4
    assert all(b - a + 1 <= 500 for a, b in spans[1:])  # 1,000 samples / 2 series
    assert frame.series_count == 2
