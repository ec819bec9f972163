"""Settings: precedence, file discovery, paths, secrets, masking and located errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from openanomaly.config.settings import DEFAULT_HTTP_PORT
from openanomaly.config.settings_loader import MASK, Override, load_settings
from openanomaly.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems(excinfo: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in excinfo.value.problems]


def test_defaults_without_any_source(tmp_path: Path) -> None:
    loaded = load_settings(env={}, cwd=tmp_path)
    s = loaded.settings
    assert loaded.config_file is None
    assert s.tsdb.url == "http://127.0.0.1:8428"
    assert s.tsdb.effective_write_url == "http://127.0.0.1:8428/api/v1/write"
    assert s.tsdb.timeout == timedelta(seconds=30)
    assert s.dispatcher.kind == "threads"
    assert s.dispatcher.workers == 2
    assert s.http.port == DEFAULT_HTTP_PORT
    assert s.http.host == "127.0.0.1"
    assert s.log.level == "info"
    assert s.storage.effective_registry_url.endswith("/data/registry.db")
    assert s.storage.effective_registry_url.startswith("sqlite:////")
    assert s.storage.effective_artifacts_url.startswith("file:///")


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    config = write(
        tmp_path / "oa.yaml",
        "tsdb:\n  url: http://file:8428\n  timeout: 10s\n"
        "dispatcher:\n  workers: 3\nlog:\n  level: warning\n",
    )
    env = {"OA_TSDB__URL": "http://env:8428", "OA_DISPATCHER__WORKERS": "5"}
    flags = [Override(("tsdb", "url"), "http://flag:8428", "--tsdb-url")]
    s = load_settings(config, env=env, overrides=flags, cwd=tmp_path).settings
    assert s.tsdb.url == "http://flag:8428"  # flag beats env beats file
    assert s.dispatcher.workers == 5  # env beats file
    assert s.tsdb.timeout == timedelta(seconds=10)  # file beats default
    assert s.log.level == "warning"
    assert s.http.listen == f"127.0.0.1:{DEFAULT_HTTP_PORT}"  # default survives


def test_env_maps_nested_sections_and_json_values(tmp_path: Path) -> None:
    env = {
        "OA_TSDB__BASIC_AUTH__USERNAME": "alice",
        "OA_TSDB__BASIC_AUTH__PASSWORD": "s3cret",
        "OA_TSDB__HEADERS": '{"X-Scope-OrgID": "team-a"}',
        "OA_TSDB__TLS__INSECURE_SKIP_VERIFY": "true",
        "OA_PIPELINES_DIR": "/etc/oa/pipelines.d",
        "UNRELATED": "x",
        "OA_DEBUG": "1",  # the CLI's switch, not a setting
    }
    s = load_settings(env=env, cwd=tmp_path).settings
    assert s.tsdb.basic_auth.username == "alice"
    assert s.tsdb.basic_auth.password is not None
    assert s.tsdb.basic_auth.password.get_secret_value() == "s3cret"
    assert s.tsdb.headers == {"X-Scope-OrgID": "team-a"}
    assert s.tsdb.tls.insecure_skip_verify is True
    assert s.pipelines_dir == Path("/etc/oa/pipelines.d")


def test_file_discovery_order(tmp_path: Path) -> None:
    write(tmp_path / "openanomaly.yaml", "dispatcher: {workers: 7}\n")
    write(tmp_path / "other.yaml", "dispatcher: {workers: 8}\n")
    write(tmp_path / "explicit.yaml", "dispatcher: {workers: 9}\n")
    assert load_settings(env={}, cwd=tmp_path).settings.dispatcher.workers == 7
    env = {"OA_CONFIG": str(tmp_path / "other.yaml")}
    assert load_settings(env=env, cwd=tmp_path).settings.dispatcher.workers == 8
    explicit = tmp_path / "explicit.yaml"
    assert load_settings(explicit, env=env, cwd=tmp_path).settings.dispatcher.workers == 9


@pytest.mark.parametrize(
    ("explicit", "env", "origin"),
    [(Path("missing.yaml"), {}, "--config"), (None, {"OA_CONFIG": "gone.yaml"}, "env OA_CONFIG")],
)
def test_named_config_file_must_exist(
    tmp_path: Path, explicit: Path | None, env: dict[str, str], origin: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(explicit, env=env, cwd=tmp_path)
    assert problems(caught)[0].startswith(origin)
    assert "does not exist" in problems(caught)[0]


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "etc" / "oa.yaml",
        "pipelines_dir: pipelines.d\nstorage: {data_dir: state}\n"
        "tsdb: {bearer_token_file: token, tls: {ca_file: /abs/ca.pem}}\n",
    )
    env = {"OA_STORAGE__DATA_DIR": "from-env"}
    s = load_settings(config, env=env, cwd=tmp_path).settings
    assert s.pipelines_dir == tmp_path / "etc" / "pipelines.d"
    assert s.tsdb.bearer_token_file == tmp_path / "etc" / "token"
    assert s.tsdb.tls.ca_file == Path("/abs/ca.pem")
    assert s.storage.data_dir == Path("from-env")  # env and flags: relative to the cwd


def test_env_placeholders_fill_secrets_and_are_masked(tmp_path: Path) -> None:
    config = write(
        tmp_path / "oa.yaml",
        "tsdb:\n"
        "  url: http://vm:8428\n"
        "  bearer_token: ${VM_TOKEN}\n"
        "  headers:\n"
        "    X-Scope-OrgID: ${TENANT}\n"
        "    Authorization-Extra: plain\n"
        "storage:\n"
        "  registry_url: postgresql://oa:hunter2@db:5432/oa\n"
        "dispatcher: {kind: threads}\n",
    )
    env = {"VM_TOKEN": "tok-123", "TENANT": "team-a"}
    loaded = load_settings(config, env=env, cwd=tmp_path)
    token = loaded.settings.tsdb.bearer_token
    assert token is not None
    assert token.get_secret_value() == "tok-123"
    assert loaded.settings.tsdb.headers["X-Scope-OrgID"] == "team-a"
    shown = loaded.masked()
    text = repr(shown)
    for secret in ("tok-123", "team-a", "hunter2", "plain"):
        assert secret not in text
    assert shown["tsdb"]["bearer_token"] != "tok-123"
    assert shown["tsdb"]["headers"]["X-Scope-OrgID"] == MASK
    assert shown["tsdb"]["headers"]["Authorization-Extra"] == MASK  # sensitive name
    assert shown["storage"]["registry_url"] == f"postgresql://oa:{MASK}@db:5432/oa"
    assert shown["tsdb"]["url"] == "http://vm:8428"  # not a secret: shown as is
    assert "tok-123" not in repr(loaded.settings)


def test_literal_dollar_brace_and_plain_dollars(tmp_path: Path) -> None:
    config = write(tmp_path / "oa.yaml", "tsdb:\n  headers:\n    X-Note: 'a $$${b} $c'\n")
    s = load_settings(config, env={}, cwd=tmp_path).settings
    assert s.tsdb.headers["X-Note"] == "a $${b} $c"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            "tsdb:\n  bearer_token: ${NOPE}\n",
            {},
            "oa.yaml:2: tsdb.bearer_token: environment variable NOPE is not set",
        ),
        ("tsdb:\n  url: ${1BAD}\n", {}, "oa.yaml:2: tsdb.url: bad placeholder '${1BAD}'"),
        ("tsdb:\n  timeout: 30x\n", {}, "oa.yaml:2: tsdb.timeout: '30x' is not a duration"),
        ("tsdb:\n  timeout: 30\n", {}, "oa.yaml:2: tsdb.timeout: '30' has no unit"),
        ("tsdb:\n  timeout: 0s\n", {}, "oa.yaml:2: tsdb.timeout: timeout must be greater than 0s"),
        (
            "tsdb:\n  ulr: http://x\n",
            {},
            "oa.yaml:2: tsdb.ulr: unknown key 'ulr' (did you mean 'url'?)",
        ),
        ("tsbd: {}\n", {}, "oa.yaml:1: tsbd: unknown key 'tsbd' (did you mean 'tsdb'?)"),
        (
            "tsdb:\n  url: ftp://x\n",
            {},
            "oa.yaml:2: tsdb.url: url must be an http:// or https:// URL",
        ),
        (
            "dispatcher:\n  kind: kafka\n",
            {},
            "oa.yaml:2: dispatcher.kind: Input should be 'threads' or 'celery', got 'kafka'",
        ),
        (
            "dispatcher:\n  workers: 0\n",
            {},
            "oa.yaml:2: dispatcher.workers: Input should be greater than or equal to 1",
        ),
        ("http:\n  listen: 8495\n", {}, "oa.yaml:2: http.listen: Input should be a valid string"),
        ("http:\n  listen: ':8495'\n", {}, "oa.yaml:2: http.listen: listen needs a host"),
        (
            "log:\n  format: xml\n",
            {},
            "oa.yaml:2: log.format: Input should be 'text' or 'json', got 'xml'",
        ),
        ("log: {level: on}\n", {}, "YAML read this as the boolean true: quote it"),
        (
            "tsdb:\n  headers:\n    User-Agent: me\n",
            {},
            "oa.yaml:2: tsdb.headers: header 'User-Agent' is set by OpenAnomaly",
        ),
        ("tsdb:\n  headers:\n    'bad header': x\n", {}, "is not a valid HTTP header name"),
        (
            "tsdb:\n  bearer_token: a\n  bearer_token_file: /t\n",
            {},
            "oa.yaml:1: tsdb: give either bearer_token or bearer_token_file",
        ),
        (
            "tsdb:\n  bearer_token: a\n  basic_auth: {username: u}\n",
            {},
            "choose one authentication",
        ),
        (
            "tsdb:\n  basic_auth: {password: p}\n",
            {},
            "oa.yaml:2: tsdb.basic_auth: a password needs a username",
        ),
        ("tsdb:\n  tls: {cert_file: /c}\n", {}, "cert_file and key_file go together"),
        ("tsdb:\n  url: http://a\n  url: http://b\n", {}, "oa.yaml:3: tsdb.url: duplicate key"),
        ("- a\n- b\n", {}, "oa.yaml:1: settings file must be a YAML mapping"),
        ("tsdb: [\n", {}, "oa.yaml:2: invalid YAML"),
        (
            "",
            {"OA_TSDB__TIMEOUT": "soon"},
            "env OA_TSDB__TIMEOUT: tsdb.timeout: 'soon' is not a duration",
        ),
        (
            "",
            {"OA_TSDB__TIMOUT": "1s"},
            "env OA_TSDB__TIMOUT: tsdb.timout: unknown key 'timout' (did you mean 'timeout'?)",
        ),
    ],
)
def test_every_problem_names_its_origin_field_and_reason(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    config = write(tmp_path / "oa.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env=env, cwd=tmp_path)
    rendered = [p.replace(str(tmp_path) + "/", "") for p in problems(caught)]
    assert any(expected in p for p in rendered), rendered


def test_flag_errors_name_the_flag(tmp_path: Path) -> None:
    flags = [Override(("dispatcher", "workers"), "many", "--set dispatcher.workers")]
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, overrides=flags, cwd=tmp_path)
    assert problems(caught) == [
        "--set dispatcher.workers: dispatcher.workers: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    config = write(tmp_path / "oa.yaml", "tsdb:\n  timeout: x\n  url: nope\nlog: {level: loud}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={}, cwd=tmp_path)
    fields = sorted(p.field for p in caught.value.problems)
    assert fields == ["log.level", "tsdb.timeout", "tsdb.url"]


def test_write_url_and_trailing_slashes(tmp_path: Path) -> None:
    env = {"OA_TSDB__URL": "https://mimir.example:443/prometheus/"}
    s = load_settings(env=env, cwd=tmp_path).settings
    assert s.tsdb.url == "https://mimir.example:443/prometheus"
    assert s.tsdb.effective_write_url == "https://mimir.example:443/prometheus/api/v1/write"
    env["OA_TSDB__WRITE_URL"] = "http://vminsert:8480/insert/0/prometheus/api/v1/write"
    s = load_settings(env=env, cwd=tmp_path).settings
    assert s.tsdb.effective_write_url == env["OA_TSDB__WRITE_URL"]


def test_commented_example_settings_file_shows_the_defaults(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "openanomaly.yaml"
    from_file = load_settings(example, env={}, cwd=tmp_path).settings
    defaults = load_settings(env={}, cwd=tmp_path).settings
    # Paths in a file are relative to the file; everything else must equal the defaults.
    assert from_file.pipelines_dir == example.parent / "pipelines.d"
    assert from_file.storage.data_dir == example.parent / "data"
    storage = from_file.storage.model_copy(update={"data_dir": defaults.storage.data_dir})
    rebased = from_file.model_copy(
        update={"pipelines_dir": defaults.pipelines_dir, "storage": storage}
    )
    assert rebased == defaults


def test_secrets_never_appear_in_error_messages(tmp_path: Path) -> None:
    config = write(
        tmp_path / "oa.yaml", 'tsdb: {write_url: "${TOK}"}\ndispatcher: {kind: "${TOK}"}\n'
    )
    env = {"TOK": "s3cr3t-token", "OA_TSDB__URL": "ftp://user:hunter2@tsdb"}
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env=env, cwd=tmp_path)
    text = "\n".join(problems(caught))
    assert len(caught.value.problems) == 3
    assert "s3cr3t-token" not in text
    assert "hunter2" not in text
    assert f"ftp://user:{MASK}@tsdb" in text


@pytest.mark.parametrize("listen", ["h:\u0663", "127.0.0.1:99999", "127.0.0.1:"])
def test_listen_needs_an_ascii_port(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError, match="listen must be host:port"):
        load_settings(env={"OA_HTTP__LISTEN": listen}, cwd=tmp_path)


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a settings file"):
        load_settings(tmp_path, env={}, cwd=tmp_path)
