"""The one launcher of the emulator: the demo identity from the contract, any other by environment, never by flag."""

from __future__ import annotations

from pathlib import Path

import requests

from emulator.launch import Identity, launch, wait_up
from emulator.options import SECRET_ENV, TOKEN_ENV
from shared.contract import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, REALM
from testkit.process import Proc, free_port

SECRET, TOKEN = "s3cret-of-a-real-client", "f0f0f0f0-0000-4000-8000-00000000beef"


def test_the_demo_identity_is_left_to_the_contract_and_an_inherited_secret_cannot_replace_it() -> None:
    demo = Identity()
    assert demo.flags() == []
    inherited = {SECRET_ENV: "left-over", TOKEN_ENV: "left-over", "HOME": "/home/x"}
    assert demo.environ(inherited) == {"HOME": "/home/x"}


def test_another_identity_goes_by_environment_and_only_its_names_by_flag() -> None:
    other = Identity("other-realm", "other-client", SECRET, TOKEN)
    assert other.flags() == ["--realm", "other-realm", "--client-id", "other-client"]
    assert other.environ({}) == {SECRET_ENV: SECRET, TOKEN_ENV: TOKEN}
    assert not {SECRET, TOKEN} & set(other.flags())


def test_a_launched_emulator_takes_the_identity_it_was_given_and_no_other(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "emulator.log"
    with open(log, "ab") as out:
        proc = Proc(launch(port, identity=Identity(client_secret=SECRET), output=out.fileno()), log)
    try:
        assert wait_up(proc.popen, port), proc.output()
        assert SECRET.encode() not in Path(f"/proc/{proc.popen.pid}/cmdline").read_bytes()
        url = f"http://127.0.0.1:{port}/auth/realms/{REALM}/protocol/openid-connect/token"

        def token(secret: str) -> int:
            form = {"grant_type": "client_credentials", "client_id": LOCAL_CLIENT_ID, "client_secret": secret}
            return requests.post(url, data=form, timeout=5).status_code

        assert token(SECRET) == 200
        assert token(LOCAL_CLIENT_SECRET) == 401
    finally:
        proc.stop()
