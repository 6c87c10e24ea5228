"""vso.py escaping checked against the agent's own decoding rules (reimplemented in devops_agent)."""
from __future__ import annotations

import io

import pytest

from amlops.devops import vso
from devops_agent import parse_command

TRICKY = ["plain", "", "100%", "%AZP25", "%25", "%3B literal", "a;b", "x]y", "line1\nline2", "cr\rlf\r\n",
          "%0A not a newline", "%5D%3B%0D", "ünïcödé ✓", "=", "k=v;k2=v2]", "##vso[task.complete]no", "%%;;]]"]


@pytest.mark.parametrize("value", TRICKY)
def test_property_and_data_round_trip_through_the_agent_parser(value: str) -> None:
    line = vso.format_command("task.setvariable", {"variable": "out", "extra": value}, value)
    assert "\n" not in line and "\r" not in line
    command = parse_command(line)
    assert command is not None and command.name == "task.setvariable"
    assert command.data == value
    if value:  # the agent drops empty properties (`extra=` splits into one part)
        assert command.properties.get("extra") == value


def test_escaping_matches_the_documented_table() -> None:
    assert vso.escape_property("%;]\r\n") == "%AZP25%3B%5D%0D%0A"
    assert vso.escape_data("%;]\r\n") == "%AZP25;]%0D%0A"


def test_properties_with_none_are_left_out_and_booleans_are_lowercase() -> None:
    line = vso.format_command("task.setvariable", {"variable": "a", "isOutput": True, "issecret": None}, "v")
    assert line == "##vso[task.setvariable variable=a;isOutput=true]v"


@pytest.mark.parametrize("name", ["task", "task.set.variable", "task.set variable", "task.x]"])
def test_bad_command_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        vso.format_command(name)


def test_log_masks_secrets_registered_before_and_neutralizes_commands() -> None:
    out = io.StringIO()
    log = vso.Log(out)
    log.setsecret("hunter22-secret")
    log.info("token hunter22-secret then ##vso[task.complete result=Failed]forged")
    log.complete("Succeeded", "done with hunter22-secret")
    lines = out.getvalue().splitlines()
    assert lines[0] == "##vso[task.setsecret]hunter22-secret"
    assert "hunter22-secret" not in "\n".join(lines[1:])
    assert parse_command(lines[-2]) is None  # the forged command is inert
    assert parse_command(lines[-1]).properties.get("result") == "Succeeded"


def test_multiline_secret_masks_each_line_and_json_form() -> None:
    out = io.StringIO()
    log = vso.Log(out)
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nABCDEFGHIJKLMNOP\n-----END PRIVATE KEY-----"
    log.setsecret(pem)
    log.info("json: " + '"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\nABCDEFGHIJKLMNOP"')
    log.info("line: ABCDEFGHIJKLMNOP")
    text = out.getvalue()
    registered = [parse_command(line).data for line in text.splitlines() if line.startswith("##vso[task.setsecret]")]
    assert pem in registered
    tail = text.split("json: ")[1]
    assert "MIIEvQ" not in tail and "ABCDEFGHIJKLMNOP" not in tail


def test_secret_output_variable_is_registered_first_and_sent_unmasked() -> None:
    out = io.StringIO()
    log = vso.Log(out)
    log.setvariable("scoringKey", "k3y;with]chars", is_secret=True)
    commands = [parse_command(line) for line in out.getvalue().splitlines()]
    assert [c.name for c in commands][-1] == "task.setvariable"
    assert commands[0].name == "task.setsecret" and commands[0].data == "k3y;with]chars"
    assert commands[-1].data == "k3y;with]chars" and commands[-1].properties.get("issecret") == "true"


def test_log_stream_routes_prints_through_the_mask() -> None:
    out = io.StringIO()
    log = vso.Log(out)
    log.setsecret("p4ssw0rd!")
    stream = vso.LogStream(log)
    stream.write("partial p4ss")
    stream.write("w0rd! line\n##vso[task.setvariable variable=x]y\n")
    stream.flush()
    text = "\n".join(line for line in out.getvalue().splitlines() if not line.startswith("##vso[task.setsecret]"))
    assert "p4ssw0rd!" not in text and "***" in text
    assert all(parse_command(line) is None for line in text.splitlines())


def test_complete_and_issue_validate_their_arguments() -> None:
    log = vso.Log(io.StringIO())
    with pytest.raises(ValueError):
        log.complete("Broken")
    with pytest.raises(ValueError):
        log.logissue("info", "x")


@pytest.mark.parametrize("echo", [
    lambda s: "client_secret=" + __import__("urllib.parse").parse.quote_plus(s) + "&grant_type=client_credentials",
    lambda s: "client_secret=" + __import__("urllib.parse").parse.quote(s, safe=""),
    lambda s: '{"error": "bad secret \\"' + __import__("json").dumps(s)[1:-1] + '\\""}',
    lambda s: "Authorization: Basic " + __import__("base64").b64encode(f":{s}".encode()).decode(),
    lambda s: "Authorization: Basic " + __import__("base64").b64encode(f"user:{s}".encode()).decode(),
    lambda s: "token " + __import__("base64").urlsafe_b64encode(s.encode()).decode(),
    lambda s: "raw " + s,
], ids=["form_plus_for_space", "url_percent", "json_escaped", "basic_colon_pat", "basic_user_pat", "base64url", "raw"])
def test_a_secret_echoed_by_a_server_in_any_encoding_is_masked(echo) -> None:
    secret = 'Cl1ent secret/with+odd="chars"~0123456789'
    out = io.StringIO()
    log = vso.Log(out)
    log.setsecret(secret)
    log.info(f"the sign-in server said: {echo(secret)}")
    line = out.getvalue().splitlines()[-1]
    assert "***" in line, line
    for fragment in (secret, "Cl1ent secret", "with+odd", "0123456789"):
        assert fragment not in line
    import base64
    assert base64.b64encode(secret.encode()).decode()[8:-8] not in line
