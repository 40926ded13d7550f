"""What only the Elasticsearch store has: its mapping and generations, several stores on one
cluster, repair of an interrupted write, mapping migration, ``migrate`` from SQLite, and a
real outage (the server process stopped and started again, nothing mocked)."""

from __future__ import annotations

import base64
import json
import subprocess
import threading

import pytest
import requests

from marketplace.store.base import Conflict, Query, StoreError
from marketplace.store.elastic import latest
from marketplace.store.elastic.documents import fields
from marketplace.store.elastic.indices import MAPPING_VERSION
from marketplace.store.sqlite import SQLiteStore
from tests.elastic import new_prefix
from tests.live.conftest import clean_environ, script
from tests.store.conftest import moment


@pytest.fixture
def es(elasticsearch, es_prefix):
    """A store on this test's prefix, and a second one on the same indices (another client,
    as another app server would have)."""
    first, second = elasticsearch.store(es_prefix), elasticsearch.store(es_prefix)
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def own_prefix(elasticsearch):
    """A prefix whose indices this test creates and changes as it likes; dropped after."""
    prefix = new_prefix()
    yield prefix
    elasticsearch.drop(prefix)


def get_json(cluster, path: str, **params) -> dict:
    response = requests.get(f"{cluster.url}/{path}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def titles(page) -> list[str]:
    return [entry.appliance.title for entry in page.entries]


def test_mapping_is_explicit_and_keeps_the_document_unindexed(elasticsearch, own_prefix):
    store = elasticsearch.store(own_prefix)
    store.init()
    for alias in (store.entries, store.latest):
        (index, body), = get_json(elasticsearch, f"{alias}/_mapping").items()
        mapping = body["mappings"]
        assert index == f"{alias}-1"
        assert mapping["dynamic"] == "strict"
        assert mapping["_meta"] == {"version": MAPPING_VERSION}
        properties = mapping["properties"]
        assert properties["document"] == {"type": "binary"}  # not indexed, no doc values
        assert properties["os"]["type"] == "keyword"
        assert properties["text"]["type"] == "text"
        assert properties["created"]["type"] == properties["valid"]["type"] == "date"
    store.close()


def test_a_write_through_one_server_is_read_at_once_through_another(es, make_entry):
    first, second = es
    entry = make_entry(title="seen at once")
    assert first.add(entry) is True
    assert second.get(entry.identifier, entry.email, entry.created).document == entry.document
    assert titles(second.search(Query(q="seen"))) == ["seen at once"]
    assert second.add(entry) is False
    newer = make_entry(b"x", when=moment(), title="v2")
    older = make_entry(b"x", when=moment(1), title="v1")
    assert second.add(newer) is True
    with pytest.raises(Conflict):
        first.add(older)


def test_concurrent_versions_through_two_stores_keep_the_newest(es, make_entry):
    first, second = es
    versions = [make_entry(b"raced twice", when=moment(0.01 * (30 - n)), title=f"v{n}")
                for n in range(30)]
    errors = []

    def upload(store, entries):
        for entry in entries:
            try:
                store.add(entry)
            except Conflict:
                pass
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=upload, args=(store, versions[n::4]))
               for n, store in enumerate((first, second, first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for store in (first, second):
        assert titles(store.search(Query())) == ["v29"]
        assert store.search(Query(status="all")).total == 1


def test_an_interrupted_add_is_repaired_by_the_replay(es, make_entry):
    """The entry was stored but the cluster failed before its latest copy was: the upload
    was answered 503, and the client's retry finishes the work."""
    store, _ = es
    old = make_entry(b"pair", when=moment(1), title="old")
    store.add(old)
    entry = make_entry(b"pair", when=moment(), title="new")
    with store._calls():
        latest.create(store.indices, entry.key, fields(entry, 1))  # add()'s first half
    assert titles(store.search(Query())) == ["old"]
    assert store.add(entry) is False
    assert titles(store.search(Query())) == ["new"]


def test_missing_indices_are_created_again_with_the_mapping(elasticsearch, es, make_entry):
    store, other = es
    store.add(make_entry())
    assert other.count() == 1  # other has checked the indices: it believes they exist
    store.drop()
    with pytest.raises(StoreError, match="missing"):
        other.search(Query())
    assert other.search(Query()).total == 0  # created again, empty
    other.add(make_entry(title="after"))
    (_, body), = get_json(elasticsearch, f"{other.entries}/_mapping").items()
    assert body["mappings"]["dynamic"] == "strict"


def test_reindex_swaps_in_a_new_generation(elasticsearch, own_prefix, make_entry):
    store, other = elasticsearch.store(own_prefix), elasticsearch.store(own_prefix)
    for n in range(5):
        store.add(make_entry(title=f"e{n}", when=moment(n)))
    assert store.reindex() == 5
    assert list(get_json(elasticsearch, f"_alias/{store.entries}")) == [f"{store.entries}-2"]
    assert list(get_json(elasticsearch, f"_alias/{store.latest}")) == [f"{store.latest}-2"]
    assert requests.head(f"{elasticsearch.url}/{store.entries}-1", timeout=10).status_code == 404
    assert titles(other.search(Query())) == [f"e{n}" for n in range(5)]
    other.add(make_entry(title="after reindex"))
    assert store.count() == 6
    store.close()
    other.close()


def test_reindex_rebuilds_a_lost_latest_index(elasticsearch, own_prefix, make_entry):
    store = elasticsearch.store(own_prefix)
    image = b"two versions"
    store.add(make_entry(image, when=moment(1), title="v1"))
    store.add(make_entry(image, when=moment(0), title="v2"))
    requests.delete(f"{elasticsearch.url}/{store.latest}-1", timeout=30).raise_for_status()
    fresh = elasticsearch.store(own_prefix)
    with pytest.raises(StoreError, match="reindex"):
        fresh.search(Query())
    assert fresh.reindex() == 2
    assert titles(fresh.search(Query())) == ["v2"]
    assert titles(store.search(Query(latest_only=False, sort="title", descending=False))) == [
        "v1", "v2"]
    store.close()
    fresh.close()


def cli(cluster, prefix: str, *args: str, home) -> subprocess.CompletedProcess:
    env = clean_environ(HOME=str(home), MARKETPLACE_STORE="elasticsearch",
                        MARKETPLACE_ELASTICSEARCH_URL=cluster.url,
                        MARKETPLACE_ELASTICSEARCH_INDEX_PREFIX=prefix)
    return subprocess.run([script("stratus-marketplace"), *args, "--data-dir",
                           str(home / "data")], capture_output=True, text=True, env=env,
                          timeout=300, stdin=subprocess.DEVNULL)


def test_init_store_creates_then_migrates_an_older_mapping(elasticsearch, own_prefix,
                                                           make_entry, tmp_path):
    created = cli(elasticsearch, own_prefix, "init-store", "--json", home=tmp_path)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["entries"] == 0
    store = elasticsearch.store(own_prefix)
    for n in range(3):
        store.add(make_entry(title=f"kept {n}", when=moment(n)))
    for alias in (store.entries, store.latest):  # as an older marketplace left them
        requests.put(f"{elasticsearch.url}/{alias}/_mapping", json={"_meta": {"version": 0}},
                     timeout=30).raise_for_status()
    store.close()
    outdated = elasticsearch.store(own_prefix)
    with pytest.raises(StoreError, match="init-store"):
        outdated.search(Query())
    migrated = cli(elasticsearch, own_prefix, "init-store", home=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "3 entries" in migrated.stdout
    assert outdated.mapping_version() == MAPPING_VERSION
    assert titles(outdated.search(Query())) == ["kept 0", "kept 1", "kept 2"]
    assert list(get_json(elasticsearch, f"_alias/{outdated.entries}")) == [
        f"{outdated.entries}-2"]
    outdated.close()


def test_migrate_from_sqlite_loses_nothing_and_adds_nothing_twice(
        elasticsearch, own_prefix, make_entry, ec_signer, tmp_path):
    source = SQLiteStore(tmp_path / "site" / "marketplace.db")
    for n in reversed(range(40)):  # oldest first: each pair's versions in order
        source.add(make_entry(f"image {n % 25}".encode(), signer=(None, ec_signer)[n % 3 == 0],
                              when=moment(n), title=f"entry {n}", os=("ubuntu", "debian")[n % 2],
                              deprecated="old" if n % 7 == 0 else None))
    assert source.count() >= 30
    done = cli(elasticsearch, own_prefix, "migrate", "--from", f"sqlite:{tmp_path / 'site'}",
               "--to", f"elasticsearch:{elasticsearch.url}", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["new"] == outcome["entries"] == outcome["target_total"] == source.count()
    target = elasticsearch.store(own_prefix)
    queries = [Query(status="all", limit=500, facets=True), Query(limit=500),
               Query(latest_only=False, limit=500, sort="title"), Query(q="entry 1", limit=500),
               Query(status="deprecated", limit=500)]
    for query in queries:
        want, got = source.search(query), target.search(query)
        assert [e.document for e in got.entries] == [e.document for e in want.entries]
        assert (got.total, got.facets) == (want.total, want.facets)
    assert target.endorsers() == source.endorsers()
    again = cli(elasticsearch, own_prefix, "migrate", "--from",
                f"sqlite:{tmp_path / 'site' / 'marketplace.db'}", home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"0 new, {source.count()} already there" in again.stdout
    target.close()
    source.close()


def test_migrate_refuses_a_changed_copy_and_a_missing_source(elasticsearch, own_prefix,
                                                             make_entry, tmp_path):
    when = moment()
    source = SQLiteStore(tmp_path / "site" / "marketplace.db")
    source.add(make_entry(b"same key", when=when, title="in sqlite"))
    target = elasticsearch.store(own_prefix)
    target.add(make_entry(b"same key", when=when, title="in elasticsearch"))
    refused = cli(elasticsearch, own_prefix, "migrate", "--from", f"sqlite:{tmp_path / 'site'}",
                  home=tmp_path)
    assert refused.returncode == 1
    assert "another document is stored" in refused.stderr
    missing = cli(elasticsearch, own_prefix, "migrate", "--from",
                  f"sqlite:{tmp_path / 'nowhere'}", home=tmp_path)
    assert missing.returncode == 1 and "no SQLite store" in missing.stderr
    target.close()
    source.close()


def test_outage_is_503_then_recovers_by_itself(elasticsearch, es_prefix, make_entry, tmp_path):
    """The real server process is stopped: the API answers 503 with Retry-After and a clear
    message, health is red, the refused upload leaves nothing; started again, the same app
    serves without a restart."""
    if elasticsearch.server is None:
        pytest.skip("the cluster of MARKETPLACE_TEST_ELASTICSEARCH_URL is not ours to stop")
    from marketplace.web.app import create_app
    from marketplace.web.current import marketplace_of
    app = create_app(data_dir=str(tmp_path), **elasticsearch.settings(es_prefix))
    client = app.test_client()
    store = marketplace_of(app).store
    kept = make_entry(title="before the outage")
    assert client.post("/metadata", data=kept.document,
                       content_type="application/xml").status_code == 201
    refused = make_entry(title="during the outage")
    elasticsearch.server.stop()
    try:
        for response in (client.get("/api/v1/appliances"),
                         client.get("/metadata", headers={"Accept": "application/json"}),
                         client.post("/metadata", data=refused.document,
                                     content_type="application/xml",
                                     headers={"Accept": "application/json"})):
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "30"
            assert "try again later" in response.json["error"]
            assert "Elasticsearch" in response.json["error"]
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json["store"] is False
    finally:
        elasticsearch.server.start()
    assert client.get("/healthz").status_code == 200
    assert store.count() == 1
    assert store.get(refused.identifier, refused.email, refused.created) is None
    found = client.get("/api/v1/appliances").json
    assert [item["title"] for item in found["items"]] == ["before the outage"]
    assert client.post("/metadata", data=refused.document,
                       content_type="application/xml").status_code == 201
    store.close()


def test_settings_reach_the_client(tmp_path):
    """Authentication from a file (never the command line), TLS options, several nodes."""
    from marketplace import config
    from marketplace.store.elastic import ElasticStore
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    store = ElasticStore.from_settings(config.load(
        environ={}, store="elasticsearch", elasticsearch_url="https://es1:9200,https://es2:9201",
        elasticsearch_username="marketplace", elasticsearch_password_file=str(password),
        elasticsearch_ca_certs=str(ca), elasticsearch_index_prefix="site"))
    nodes = sorted((n.config.host, n.config.port, n.config.scheme, n.config.ca_certs)
                   for n in store.client.transport.node_pool.all())
    assert nodes == [("es1", 9200, "https", str(ca)), ("es2", 9201, "https", str(ca))]
    basic = base64.b64encode(b"marketplace:s3cret").decode()
    assert store.client._headers["authorization"] == f"Basic {basic}"
    assert (store.entries, store.latest) == ("site-entries", "site-latest")
    with pytest.raises(ValueError, match="index prefix"):
        ElasticStore(store.client, prefix="Bad*Prefix")
    store.close()


def durability_store(cluster, prefix: str, **settings: str):
    """A store on ``prefix`` with ELASTICSEARCH_* settings of the test's own."""
    from marketplace import config
    from marketplace.store.elastic import ElasticStore
    return ElasticStore.from_settings(config.load(environ={}, **cluster.settings(prefix),
                                                  **settings))


def durabilities(cluster, prefix: str) -> dict[str, str]:
    """The translog durability of every index of a prefix, by index name."""
    found = get_json(cluster, f"{prefix}-*/_settings",
                     filter_path="*.settings.index.translog.durability")
    return {name: value["settings"]["index"]["translog"]["durability"]
            for name, value in found.items()}


@pytest.mark.parametrize(("replicas", "active_shards", "translog", "expected"), [
    ("1", "all", "auto", "async"),        # two copies have each write before it is answered
    ("1-all", "all", "auto", "async"),
    ("0-1", "all", "auto", "request"),    # the replica goes when one node of two does
    ("0", "all", "auto", "request"),
    ("1", "1", "auto", "request"),        # a write may be answered with one copy up
    ("1", "all", "request", "request"),   # forced
])
def test_each_index_fsyncs_per_write_unless_a_replica_has_every_write(
        elasticsearch, own_prefix, replicas, active_shards, translog, expected):
    store = durability_store(elasticsearch, own_prefix, elasticsearch_replicas=replicas,
                             elasticsearch_wait_for_active_shards=active_shards,
                             elasticsearch_translog_durability=translog)
    store.init()
    store.close()
    assert durabilities(elasticsearch, own_prefix) == {
        f"{own_prefix}-entries-1": expected, f"{own_prefix}-latest-1": expected,
        f"{own_prefix}-state": expected}


def test_init_store_gives_existing_indices_the_durability_their_replicas_call_for(
        elasticsearch, own_prefix):
    """Translog durability is a dynamic setting: indices made under other settings, or whose
    replicas an operator changed since, are brought in line when a store is opened."""
    names = [f"{own_prefix}-entries-1", f"{own_prefix}-latest-1", f"{own_prefix}-state"]
    forced = durability_store(elasticsearch, own_prefix, elasticsearch_replicas="1",
                              elasticsearch_translog_durability="request")
    forced.init()
    forced.close()
    assert set(durabilities(elasticsearch, own_prefix).values()) == {"request"}
    auto = durability_store(elasticsearch, own_prefix, elasticsearch_replicas="1")
    assert auto.init() == 0
    assert durabilities(elasticsearch, own_prefix) == dict.fromkeys(names, "async")
    requests.put(f"{elasticsearch.url}/{names[0]}/_settings", timeout=30,
                 json={"index": {"number_of_replicas": 0}}).raise_for_status()
    again = durability_store(elasticsearch, own_prefix, elasticsearch_replicas="1")
    again.init()
    assert durabilities(elasticsearch, own_prefix) == {
        names[0]: "request", names[1]: "async", names[2]: "async"}
    auto.close()
    again.close()


def test_an_unknown_translog_durability_is_refused_naming_the_setting():
    from marketplace import config
    from marketplace.store.elastic import ElasticStore
    settings = config.load(environ={}, store="elasticsearch",
                           elasticsearch_translog_durability="async")
    with pytest.raises(ValueError, match=r"ELASTICSEARCH_TRANSLOG_DURABILITY\): use auto or"):
        ElasticStore.from_settings(settings)
