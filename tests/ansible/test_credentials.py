"""A gateway's API key as the deployment hands it over: role ttquant's variables and drop-in, and the
inventories' keys in the format the Binance adapter reads.

The role's own variables (defaults and vars) are evaluated by ansible-playbook on the controller
(connection local, nothing outside the test's directory is touched) for a few inventories, with the
role's own assert expression and its credentials.conf template; the inventories are read through
`ansible -m debug` (no connection) and their keys loaded with the adapter's loader
(core/venues/binance/credentials.py), their gateway settings checked by `ttquant config check`.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tomllib

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ttquant.core.venues.binance.credentials import load_api_credentials

REPO = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLE = ANSIBLE / "roles/ttquant"
BIN = pathlib.Path(sys.executable).parent
KEY_TOML = 'api_key = "k"\nsecret = "s"\n'

# inventory -> (ttquant_venues, ttquant_gateway_settings, ttquant_credentials)
CASES = {
    "binance_signs": (["binance", "okx"],
                      {"binance": {"adapter": {"kind": "binance"}}, "okx": {"adapter": {"kind": "dry"}}},
                      {"binance": KEY_TOML}),
    "sim_default": (["binance"], {}, {}),
    "key_missing": (["binance"], {"binance": {"adapter": {"kind": "binance"}}}, {}),
}


def run(*argv: str, cwd=ANSIBLE, env=None) -> str:
    p = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "ANSIBLE_NOCOLOR": "1", **(env or {})})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def role_vars(tmp_path: pathlib.Path) -> dict:
    """For each case: the role's venues that sign and that have a key, its drop-ins, the gateway's
    contract settings, whether its assert passes, and the credentials.conf files it renders."""
    assert_that = yaml.safe_load((ROLE / "tasks/config.yml").read_text())[0]["ansible.builtin.assert"]["that"]
    plays = []
    for case, (venues, gateway, credentials) in CASES.items():
        out = tmp_path / case
        out.mkdir()
        plays.append({
            "name": case, "hosts": "localhost", "connection": "local", "gather_facts": False,
            "vars_files": [str(ROLE / "defaults/main.yml"), str(ROLE / "vars/main.yml")],
            "tasks": [
                {"ansible.builtin.set_fact": {"ttquant_venues": venues, "ttquant_gateway_settings": gateway,
                                              "ttquant_credentials": credentials}},
                {"ansible.builtin.copy": {"dest": str(out / "vars.json"), "mode": "0600", "content": (
                    "{{ {'signing': ttquant_signing_venues, 'keyed': ttquant_credential_venues,"
                    " 'dropins': ttquant_dropins, 'gateway': ttquant_contract_settings.gateway,"
                    " 'assert': (" + assert_that + ")} | to_json }}")}},
                {"ansible.builtin.template": {"src": str(ROLE / "templates/credentials.conf.j2"),
                                              "dest": str(out) + "/{{ item.unit }}.conf", "mode": "0600"},
                 "loop": "{{ ttquant_dropins | selectattr('file', 'eq', 'credentials.conf') | list }}"},
            ]})
    playbook = tmp_path / "role_vars.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    run(BIN / "ansible-playbook", "-i", "localhost,", playbook, "-e", f"ansible_python_interpreter={sys.executable}",
        "-e", "ttquant_instance=binance", "-e", "ttquant_database_password=not-used")
    return {case: {**json.loads((tmp_path / case / "vars.json").read_text()),
                   "drop_ins": {p.name: p.read_text() for p in (tmp_path / case).glob("*.conf")}}
            for case in CASES}


def debug_var(inventory: str, var: str, *extra: str):
    """A variable of the inventory's first trading host, as Ansible templates it (no connection)."""
    host = {"local": "ttq-e2e", "tokyo": "tky-trade-01"}[inventory]
    out = run(BIN / "ansible", host, "-i", f"inventories/{inventory}", "-m", "ansible.builtin.debug", "-a",
              f"var={var}", *extra)
    return json.loads(out.split("=>", 1)[1])[var]


def loads_as_the_adapter_does(tmp_path: pathlib.Path, text: str):
    path = tmp_path / "key.toml"
    path.write_text(text)
    path.chmod(0o600)
    return load_api_credentials(path=path)


def test_the_role_keys_only_the_gateways_that_sign_and_hands_the_key_to_them(tmp_path):
    got = role_vars(tmp_path)
    signs = got["binance_signs"]
    assert (signs["signing"], signs["keyed"], signs["assert"]) == (["binance"], ["binance"], True)
    credentials = [d for d in signs["dropins"] if d["file"] == "credentials.conf"]
    assert credentials == [{"unit": "ttquant-gateway@binance.service", "file": "credentials.conf",
                            "template": "credentials.conf.j2", "venue": "binance"}]
    text = signs["drop_ins"]["ttquant-gateway@binance.service.conf"]
    directives = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert directives == ["[Service]", "LoadCredential=binance:/etc/ttquant/credentials/binance.toml"]
    # the name it loads the key by is the one the gateway's config asks for
    assert signs["gateway"]["adapter"]["credentials"] == "binance"
    # the sim adapter (the package's default) signs nothing: no key, no drop-in, nothing to refuse
    sim = got["sim_default"]
    assert (sim["signing"], sim["keyed"], sim["assert"], sim["drop_ins"]) == ([], [], True, {})
    assert not [d for d in sim["dropins"] if d["file"] == "credentials.conf"]
    # a gateway that signs without a key is refused before anything is written
    missing = got["key_missing"]
    assert (missing["signing"], missing["keyed"], missing["assert"]) == (["binance"], [], False)


def test_the_package_asks_for_the_key_by_the_venues_name():
    example = tomllib.loads(run(BIN / "ttquant", "config", "example", "gateway", cwd=REPO))
    assert example["adapter"]["credentials"] == example["venue"] == "binance"


def test_the_e2e_inventory_gives_a_key_and_the_binance_adapter_on_request(tmp_path):
    sim = "-e", "ttquant_sim_url=http://127.0.0.1:8765"
    key = debug_var("local", "ttquant_credentials", *sim)
    assert set(key) == {"binance"}
    creds = loads_as_the_adapter_does(tmp_path, key["binance"])
    assert creds.api_key == "e2e-test-key" and creds.signer.key_type == "hmac"
    # what the e2e test passes: an Ed25519 key's credentials text, in a 0600 file
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()).decode()
    given = tmp_path / "key-vars.json"
    given.write_text(json.dumps({"ttquant_e2e_binance_credentials": f'api_key = "e2eEd"\nprivate_key = """{pem}"""\n'}))
    given.chmod(0o600)
    ed = debug_var("local", "ttquant_credentials", *sim, "-e", f"@{given}")["binance"]
    ed = loads_as_the_adapter_does(tmp_path, ed)
    assert ed.api_key == "e2eEd" and ed.signer.key_type == "ed25519"
    assert debug_var("local", "ttquant_gateway_settings", *sim)["binance"]["adapter"]["kind"] == "sim"
    adapter = debug_var("local", "ttquant_gateway_settings", *sim, "-e", "ttquant_e2e_gateway_adapter=binance",
                        "-e", "ttquant_sim_rest_url=http://127.0.0.1:9443")["binance"]["adapter"]
    assert adapter == {"kind": "binance", "environment": "custom", "rest_url": "http://127.0.0.1:9443",
                       "order_entry": "ws", "ws_api_url": "ws://127.0.0.1:8765/ws-api/v3", "credentials": "binance"}
    rendered = run(BIN / "ttquant", "config", "example", "gateway", "--set-json", json.dumps({"adapter": adapter}),
                   cwd=REPO)
    (tmp_path / "gateway.binance.toml").write_text(rendered)
    run(BIN / "ttquant", "config", "check", "gateway", "--config", tmp_path / "gateway.binance.toml", cwd=REPO)


def test_tokyo_keeps_the_dry_adapter_and_a_vault_placeholder_in_the_adapters_format(tmp_path):
    main = yaml.safe_load((ANSIBLE / "inventories/tokyo/group_vars/ttquant_trading/main.yml").read_text())
    assert main["ttquant_gateway_settings"]["binance"]["adapter"]["kind"] == "dry"
    assert main["ttquant_credentials"] == {"binance": "{{ ttquant_vault_binance_credentials }}"}
    vault = yaml.safe_load((ANSIBLE / "inventories/tokyo/group_vars/ttquant_trading/vault.yml").read_text())
    placeholder = vault["ttquant_vault_binance_credentials"]
    assert "CHANGEME" in placeholder        # site.yml's first play refuses it until it is filled
    creds = loads_as_the_adapter_does(tmp_path, placeholder)
    assert creds.api_key == "CHANGEME"
