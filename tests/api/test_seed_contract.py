"""The contract, generated from the documents themselves (tests/api/seeds, parsed by
`seed_docs`): every documented path, field name and JSON type must be in /openapi.json
and in live answers of the shared pool run. A renamed field or a changed type fails here
(the last tests prove the checkers do catch both).

Documented deviations are listed in DEVIATIONS, each with its reason; nothing else is
allowed to differ.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import seed_docs as docs
from .conftest import World
from .test_f2pool_spec import ensure_user, key_headers, valid_bodies

pytestmark = pytest.mark.asyncio(loop_scope="session")

Schema = dict[str, Any]
F2 = docs.parse_f2pool()
BM = docs.parse_bitminter()
SIA = docs.parse_siamining()
# (path, field) -> the schema served instead of the document's, and why.
DEVIATIONS: dict[tuple[str, str], tuple[Schema, str]] = {
    ("/api/v1/network", "block_reward"): (
        {"type": "number"},
        "the sample's 236469 is whole siacoins; a bitcoin subsidy has fractions after "
        "halvings (12.5), so it is a JSON number: an integer when whole, as the sample",
    ),
}
SHARED = Path(__file__).resolve().parents[3] / "shared" / "seeds"


def sia_schema(path: str) -> Schema:
    schema = docs.sample_schema(SIA[path])
    for (where, name), (served, _) in DEVIATIONS.items():
        if where == path:
            schema["properties"][name] = served
    return schema


# -- the checkers ------------------------------------------------------------------------------


def _resolve(schema: Schema, spec: Schema) -> Schema:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def openapi_problems(doc: Schema, api: Schema | None, spec: Schema, where: str) -> list[str]:
    """Why the OpenAPI schema `api` does not serve the documented `doc` (empty: it does).
    Optional fields (`X | None`) count as X."""
    if api is None:
        return [f"{where}: documented, not in /openapi.json"]
    api = _resolve(api, spec)
    options = [_resolve(o, spec) for o in api.get("anyOf", [api]) if o.get("type") != "null"]
    if len(options) != 1:
        return [f"{where}: {len(options)} alternative types in /openapi.json"]
    api = options[0]
    if api.get("type") != doc["type"]:
        return [f"{where}: /openapi.json has {api.get('type')}, the document {doc['type']}"]
    out: list[str] = []
    for name, sub in (doc.get("properties") or {}).items():
        out += openapi_problems(sub, api.get("properties", {}).get(name), spec, f"{where}.{name}")
    if doc.get("additionalProperties"):
        inner = api.get("additionalProperties")
        out += openapi_problems(
            doc["additionalProperties"], inner if isinstance(inner, dict) else None, spec,
            f"{where}.*",
        )  # fmt: skip
    if doc.get("items"):
        out += openapi_problems(doc["items"], api.get("items"), spec, f"{where}[]")
    if "prefixItems" in doc:
        served = api.get("prefixItems", [])
        if len(served) != len(doc["prefixItems"]):
            return [*out, f"{where}: {len(served)} items, the document {len(doc['prefixItems'])}"]
        for i, (d, a) in enumerate(zip(doc["prefixItems"], served, strict=True)):
            out += openapi_problems(d, a, spec, f"{where}[{i}]")
    return out


def value_problems(doc: Schema, value: Any, where: str, seen: set[str]) -> list[str]:
    """Why a live JSON value is not what the document says; `seen` collects the field
    paths (no indices) that carried a value, to show the answers covered the document."""
    if value is None:
        return [] if doc.get("nullable") else [f"{where}: null"]
    seen.add(where)
    kind = doc["type"]
    checks = {
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
    }
    if not checks[kind](value):
        return [f"{where}: {value!r:.60} is not a JSON {kind}"]
    out: list[str] = []
    for name, sub in (doc.get("properties") or {}).items():
        if name not in value:
            out.append(f"{where}.{name}: missing (keys: {sorted(value)})")
        else:
            out += value_problems(sub, value[name], f"{where}.{name}", seen)
    if doc.get("additionalProperties"):
        for v in value.values():
            out += value_problems(doc["additionalProperties"], v, f"{where}.*", seen)
    if doc.get("items"):
        for v in value:
            out += value_problems(doc["items"], v, f"{where}[]", seen)
    if "prefixItems" in doc:
        if len(value) != len(doc["prefixItems"]):
            return [f"{where}: {len(value)} items, the document has {len(doc['prefixItems'])}"]
        for i, (d, v) in enumerate(zip(doc["prefixItems"], value, strict=True)):
            out += value_problems(d, v, f"{where}[{i}]", seen)
    return out


def leaves(doc: Schema, where: str) -> set[str]:
    """Every field path a document schema names (what live answers should cover)."""
    out = {where}
    for name, sub in (doc.get("properties") or {}).items():
        out |= leaves(sub, f"{where}.{name}")
    if doc.get("additionalProperties"):
        out |= leaves(doc["additionalProperties"], f"{where}.*")
    if doc.get("items"):
        out |= leaves(doc["items"], f"{where}[]")
    for i, d in enumerate(doc.get("prefixItems", [])):
        out |= leaves(d, f"{where}[{i}]")
    return out


def operation(spec: Schema, path: str, method: str) -> Schema:
    assert path in spec["paths"], f"{path}: documented, not in /openapi.json"
    assert method in spec["paths"][path], f"{method.upper()} {path} not in /openapi.json"
    return spec["paths"][path][method]  # type: ignore[no-any-return]


def response_schema(op: Schema) -> Schema:
    return op["responses"]["200"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


# -- the documents themselves ---------------------------------------------------------------


async def test_the_vendored_documents_are_the_shared_ones() -> None:
    if not SHARED.is_dir():
        pytest.skip("no ../shared/seeds next to this clone (CI): the vendored copies stand")
    for mine in (docs.BITMINTER, docs.SIAMINING, docs.F2POOL):
        assert mine.read_bytes() == (SHARED / mine.name).read_bytes(), mine.name


async def test_the_documents_parse_completely() -> None:
    assert len(F2.endpoints) == 30 and all(p.startswith("/v2/") for p in F2.endpoints)
    assert all(resp for _, resp in F2.endpoints.values()), "every endpoint answers fields"
    assert [d["value"] for d in F2.messages["ResultsEntry"]] == ["string", "MiningUserWalletResp"]
    assert F2.endpoints["/v2/hash_rate/worker/list"][1] == {"workers": "WorkerMiningInfo repeated"}
    assert sorted(BM.responses) == sorted(
        [f"/api/pool/{p}" for p in ("stats", "hashrate", "workers", "users", "round", "blocks",
                                     "shifts", "top50")] + ["/api/users", "/api/users/{name}"]
    )  # fmt: skip
    assert BM.parameters["/api/pool/blocks"] == ["max", "offset", "commodity"]
    worker = BM.responses["/api/users"]["properties"]["workers"]["items"]["properties"]
    assert worker["work"]["additionalProperties"]["properties"]["total_accepted"] == {
        "type": "integer"
    }
    assert len(SIA) == 7 and SIA["/api/v1/network"]["block_reward"] == 236469


# -- against /openapi.json --------------------------------------------------------------------


async def test_openapi_serves_every_documented_path_field_and_type(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    problems: list[str] = []
    for path in F2.endpoints:
        op = operation(spec, path, "post")
        problems += openapi_problems(F2.body(path, 1), response_schema(op), spec, path)
        if F2.endpoints[path][0]:
            request = op["requestBody"]["content"]["application/json"]["schema"]
            problems += openapi_problems(F2.body(path, 0), request, spec, f"{path} (request)")
    for path, schema in BM.responses.items():
        op = operation(spec, path, "get")
        problems += openapi_problems(schema, response_schema(op), spec, path)
        query = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        problems += [
            f"{path}: parameter {p} missing" for p in BM.parameters[path] if p not in query
        ]
    for path in SIA:
        op = operation(spec, path, "get")
        problems += openapi_problems(sia_schema(path), response_schema(op), spec, path)
    assert not problems, "\n".join(problems)


# -- against live answers ---------------------------------------------------------------------

F2POOL_READS = (
    "/v2/mining_user/get", "/v2/mining_user/list", "/v2/assets/balance",
    "/v2/assets/transactions/list", "/v2/hash_rate/info", "/v2/hash_rate/info_list",
    "/v2/hash_rate/history", "/v2/hash_rate/worker/list", "/v2/hash_rate/worker/history",
    "/v2/hash_rate/distribution/orders", "/v2/hash_rate/distribution/settlements",
    "/v2/revenue/distribution/info", "/v2/blocks/paging", "/v2/blocks/date_range",
    "/v2/blocks/user", "/v2/mining_user/threshold/update_value",
)  # fmt: skip
# Lists this run leaves empty (nothing is distributed in it), so their fields cannot show
# up live here; test_f2pool_actions and test_f2pool_contract fill and check them.
EMPTY_HERE = ("/v2/hash_rate/distribution/", "/v2/revenue/distribution/")


async def test_live_answers_carry_every_documented_field_and_type(
    world: World, client: httpx.AsyncClient
) -> None:
    problems: list[str] = []
    seen: set[str] = set()
    expected: set[str] = set()
    user = await ensure_user(world, "seedc")
    await world.ctx.accounts.add_page("acme", "alice", "seed contract", "1")  # pages[] show
    bodies = valid_bodies(world.ctx.clock(), user, user, world.wallets["alice"])
    bodies["/v2/mining_user/get"] = {"mining_user_name": "alice"}
    bodies["/v2/mining_user/threshold/update_value"] = {
        "mining_user_name": user,
        "currency": "bitcoin",
    }
    for path in F2POOL_READS:
        r = await client.post(path, json=bodies[path], headers=key_headers(world.keys["acme"]))
        assert r.status_code == 200, (path, r.text)
        problems += value_problems(F2.body(path, 1), r.json(), path, seen)
        if not path.startswith(EMPTY_HERE):
            expected |= leaves(F2.body(path, 1), path)
    bitminter_key = {"Authorization": f"key={world.keys['acme']}"}
    for path, schema in BM.responses.items():
        url = path.replace("{name}", "alice")
        r = await client.get(url, headers=bitminter_key if path.startswith("/api/users") else {})
        assert r.status_code == 200, (path, r.text)
        problems += value_problems(schema, r.json(), path, seen)
        expected |= leaves(schema, path)
    for path in SIA:
        r = await client.get(path.replace("{address}", world.address_miner))
        if r.status_code == 503 and path.endswith("/market"):
            continue  # no price source in this run (test_siamining_input has one)
        assert r.status_code == 200, (path, r.text)
        problems += value_problems(sia_schema(path), r.json(), path, seen)
        expected |= leaves(sia_schema(path), path)
    assert not problems, "\n".join(problems)
    market = {p for p in expected if p.startswith("/api/v1/market")}
    missing = sorted(expected - seen - market)
    assert not missing, "documented fields no live answer showed:\n" + "\n".join(missing)


# -- the checkers do catch renames and type changes -------------------------------------------


async def test_a_renamed_field_or_a_changed_type_fails(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    stats = BM.responses["/api/pool/stats"]
    live = (await client.get("/api/pool/stats")).json()
    assert value_problems(stats, live, "stats", set()) == []
    renamed = {("hashrate" if k == "hash_rate" else k): v for k, v in live.items()}
    assert value_problems(stats, renamed, "stats", set())
    assert value_problems(
        stats, {**live, "active_workers": str(live["active_workers"])}, "s", set()
    )
    assert value_problems(stats, {**live, "active_workers": 1.5}, "s", set())

    path = "/v2/hash_rate/info"
    served = response_schema(spec["paths"][path]["post"])
    assert openapi_problems(F2.body(path, 1), served, spec, path) == []
    for mutate in ("rename", "retype"):
        bad = copy.deepcopy(spec)
        info = bad["components"]["schemas"]["HashRateInfo"]["properties"]
        if mutate == "rename":
            info["h1_hashrate"] = info.pop("h1_hash_rate")
        else:
            info["h1_hash_rate"] = {"type": "integer"}
        assert openapi_problems(F2.body(path, 1), served, bad, path), mutate
