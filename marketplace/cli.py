"""stratus-marketplace: run the marketplace server and look after its store.

``serve`` runs the app under gunicorn (the Flask development server only with ``--debug``);
``demo`` fills an empty store with signed demo entries, then serves; ``reindex`` rebuilds
the indexes from the stored documents; ``init-store`` creates an empty store (and, on
Elasticsearch, migrates indices of an older mapping); ``migrate`` copies a SQLite store into
Elasticsearch; ``import`` takes over an original StratusLab marketplace's documents (see
:mod:`marketplace.importer`); ``replicate`` pulls a primary into a replica (see
:mod:`marketplace.replica`); ``tombstones`` lists the entries operators removed and ``lift``
lets one be published again (audited); ``admin-account`` prints a line of the admin
accounts file; ``init-log`` makes the transparency log's key and ``check-log`` compares the
store with the log (:mod:`marketplace.log`). ``init-store`` and ``serve`` take in the
moderation file of an older version (:func:`adopt_moderation_file`); ``serve`` then
finishes what a crash interrupted (:meth:`~marketplace.moderation.workflow.Moderation.
repair`) and runs ``check-log``, whose result ``/healthz`` shows. Settings come from
``MARKETPLACE_*`` variables and ``marketplace.cfg`` in the data dir; the command line sets the
data dir, and every setting reaches the gunicorn workers through the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from gunicorn.app.base import BaseApplication

from marketplace import config
from marketplace.metadata.progress import Progress, reader_gone
from marketplace.store.base import StoreError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 4
METRICS_DIR = "prometheus"
SOME_REFUSED = 3
SPLIT_VIEW = 4  # replicate: the primary's log does not extend what this witness cosigned


def build_parser() -> argparse.ArgumentParser:
    epilog = ("settings (environment variables, or keys of a [marketplace] section in "
              f"DATA_DIR/{config.CONFIG_FILE}; the environment wins):\n{config.describe()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR",
                        help="store and config folder (else MARKETPLACE_DATA_DIR)")
    p = argparse.ArgumentParser(prog="stratus-marketplace", epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Run the appliance marketplace and look after "
                                "its store.")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (("serve", "run the marketplace under gunicorn"),
                       ("demo", "add signed demo entries to an empty store, then serve")):
        sub = commands.add_parser(name, parents=[common], help=text, description=text,
                                  epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _server_options(sub)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the outcome as JSON")
    output.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    for name, text in (("reindex", "rebuild every index from the stored documents"),
                       ("init-store", "create an empty store (serve does it too); on "
                        "Elasticsearch, also migrate indices of an older mapping")):
        commands.add_parser(name, parents=[common, output], help=text, description=text,
                            epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    text = ("copy a SQLite store into Elasticsearch: every entry (bulk), then the "
            "transparency log leaf for leaf, the change feed and the audit log with their "
            "serials, tombstones, blocks, held uploads, mail counts and marks, into an empty "
            "state only (exit status 1 and nothing written otherwise); run it again to check: "
            "nothing is added twice")
    sub = commands.add_parser("migrate", parents=[common, output], help=text, description=text,
                              epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH",
                     help="the SQLite store: its file or its data dir")
    sub.add_argument("--to", dest="target", default="elasticsearch",
                     metavar="elasticsearch[:URL]", help="the Elasticsearch of the "
                     "MARKETPLACE_ELASTICSEARCH_* settings (URL overrides theirs)")
    text = ("take over an original StratusLab marketplace: judge each DIR/metadata/<id>/"
            "<email>/<created>.xml as of its endorsement date and store those that pass "
            "(run it again: nothing is added twice). Exit status 0: every file is in; "
            f"{SOME_REFUSED}: done, but some files were refused (each with its rule)")
    sub = commands.add_parser("import", parents=[common, output], help=text, description=text,
                              epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_argument("directory", metavar="DIR", help="the original's data directory (the "
                     "folder holding metadata/)")
    _moderation_commands(commands, common, output, epilog)
    _log_commands(commands, common, output, epilog)
    return p


def _log_commands(commands, common, output, epilog: str) -> None:
    text = ("make the transparency log's signing key (Ed25519, named after the host of "
            "MARKETPLACE_PUBLIC_URL + /log) in MARKETPLACE_LOG_KEY or DATA_DIR/log-key, mode "
            "0600, and print its verifier key for nodes; with --witness, a replica's "
            "cosigning key in MARKETPLACE_REPLICA_WITNESS_KEY. Back the key up: nodes trust "
            "it (docs/log.md)")
    sub = commands.add_parser("init-log", parents=[common, output], help=text,
                              description=text, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_argument("--witness", action="store_true", help="make a witness key instead")
    sub.add_argument("--force", action="store_true", help="replace a key file that exists "
                     "(nodes trusting the old key then refuse this log: see key rotation in "
                     "docs/log.md)")
    text = ("compare the store, the change feed, the audit log, tombstones and blocks with "
            "the transparency log; exit status 1 and every disagreement (a row deleted or "
            "altered by hand) listed, 0 when they agree")
    commands.add_parser("check-log", parents=[common, output], help=text, description=text,
                        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def _moderation_commands(commands, common, output, epilog: str) -> None:
    text = ("pull the entries of a primary marketplace into this read-only replica, "
            "verifying each one here. Exit status of --once: 0, everything pulled; "
            f"{SOME_REFUSED}, pulled, but entries refused here were left out (each logged "
            "with its reason); 1, the primary could not be read (the next pull goes on from "
            f"where this one stopped); {SPLIT_VIEW}, a witnessing replica refused the "
            "primary's log checkpoint: it does not extend the one cosigned before (both kept "
            "as evidence)")
    sub = commands.add_parser("replicate", parents=[common, output], help=text,
                              description=text, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_argument("--primary", metavar="URL", help="the primary (else "
                     "MARKETPLACE_PRIMARY_URL)")
    sub.add_argument("--once", action="store_true", help="pull once and exit (for cron); "
                     "without it, pull every MARKETPLACE_REPLICATE_INTERVAL seconds")
    sub.add_argument("--full", action="store_true", help="walk every entry of the primary "
                     "again before following its change feed")
    text = "list the entries operators removed: their uploads are refused until lifted"
    commands.add_parser("tombstones", parents=[common, output], help=text, description=text,
                        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    text = ("let a removed entry be published again (audited, as the user running this "
            "command)")
    sub = commands.add_parser("lift", parents=[common, output], help=text, description=text,
                              epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_argument("identifier", help="the entry's identifier")
    sub.add_argument("email", help="its endorser's email")
    sub.add_argument("created", help="its endorsement date, YYYY-MM-DDTHH:MM:SSZ")
    sub.add_argument("--reason", required=True, help="why (written in the audit log)")
    text = ("print a line for MARKETPLACE_ADMIN_ACCOUNTS_FILE: NAME and a hash of the password "
            "(asked for, or read from standard input when it is not a terminal)")
    sub = commands.add_parser("admin-account", help=text, description=text)
    sub.add_argument("name", help="the account name (written in the audit log)")


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default "
                   f"{DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"gunicorn worker processes (default {DEFAULT_WORKERS})")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"threads per worker (default {DEFAULT_THREADS})")
    p.add_argument("--debug", action="store_true",
                   help="Flask's development server with the debugger, not gunicorn")
    p.add_argument("--replica-of", metavar="URL", help="serve a read-only replica of this "
                   "marketplace and follow it (sets MARKETPLACE_PRIMARY_URL)")


def settings_for(options: argparse.Namespace) -> dict[str, str]:
    """The effective settings, with the data dir made absolute and exported to the
    environment so that gunicorn's workers (and any child) see the same ones."""
    settings = config.load(options.data_dir)
    data_dir = Path(settings["DATA_DIR"]).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings["DATA_DIR"] = str(data_dir)
    os.environ[config.ENV_PREFIX + "DATA_DIR"] = str(data_dir)
    return settings


def init_store(settings: dict[str, str], migrate: bool = True) -> int:
    """Create the store if needed (before any worker starts); how many entries it holds.
    On Elasticsearch, ``migrate`` also moves indices of an older mapping to the current one
    (``init-store`` does; ``serve`` does not, so that several servers starting at once never
    reindex side by side)."""
    from marketplace.service import open_store
    store = open_store(settings)
    try:
        init = getattr(store, "init", None)
        count = init(migrate=migrate) if init else store.count()
        adopt_moderation_file(settings, store)
        return count
    finally:
        store.close()


def adopt_moderation_file(settings: dict[str, str], store) -> None:
    """Take the moderation file of an older version (``MODERATION_DB``, or ``moderation.db``
    in the data dir) into the store's state, once, and say so; ``init-store`` and ``serve``
    do it before anything else reads the state."""
    old = Path(settings["MODERATION_DB"] or Path(settings["DATA_DIR"]) / "moderation.db")
    if not old.exists():
        return
    adopt = getattr(store.state, "adopt", None)
    if adopt is None:
        raise RuntimeError(f"{old} holds the moderation state of an older version, and this "
                           "store cannot take it in: take it in with the SQLite store first")
    try:
        done = adopt(old, datetime.now(UTC).replace(microsecond=0))
    except sqlite3.DatabaseError as exc:
        raise RuntimeError(f"cannot read the old moderation file {old}: {exc}") from exc
    if done is not None:
        print(f"took in the moderation state of {old} (renamed {old.name}.migrated): " +
              (", ".join(f"{n} {name}" for name, n in done.items()) or "done before"),
              file=sys.stderr, flush=True)


@contextmanager
def moderation_of(settings: dict[str, str]) -> Iterator:
    """The marketplace's moderation (policy, and the store with its state) for one command."""
    from marketplace.moderation.workflow import Moderation
    from marketplace.service import open_store
    moderation = Moderation.from_settings(settings, open_store(settings))
    try:
        yield moderation
    finally:
        moderation.store.close()


def repair(settings: dict[str, str]) -> None:
    """Finish what a crash interrupted (:meth:`State.repair`; said when it did anything)."""
    with moderation_of(settings) as moderation:
        done = moderation.repair(moderation.now())
    if any(done.values()):
        print("repaired after a crash: " + ", ".join(
            f"{count} {name}" for name, count in done.items() if count),
            file=sys.stderr, flush=True)


def tombstones(options: argparse.Namespace, settings: dict[str, str]) -> int:
    """``tombstones``: one line per removed entry (or JSON)."""
    with moderation_of(settings) as moderation:
        found = [t.as_dict() for t in moderation.state.tombstones()]
    if options.json:
        print(json.dumps({"tombstones": found, "total": len(found)}))
    elif not options.quiet:
        for t in found:
            print(f"{t['identifier']} {t['email']} {t['created']}  {t['rule']} by "
                  f"{t['actor']} on {t['at']}: {t['reason']}")
    return 0


def lift(options: argparse.Namespace, settings: dict[str, str]) -> int:
    """``lift IDENTIFIER EMAIL CREATED --reason TEXT``: exit status 1 if not removed."""
    import getpass
    import socket
    reason = " ".join(options.reason.split())
    if not reason or not reason.isprintable():
        raise ValueError("--reason must be printable text, not empty")
    key = (options.identifier, options.email, options.created)
    actor = f"{getpass.getuser()}@{socket.gethostname()} (command line)"
    with moderation_of(settings) as moderation:
        done = moderation.lift(key, actor, reason, moderation.now())
    if not done:
        raise ValueError(f"no removal of {' '.join(key)} to lift")
    report(options, f"lifted the removal of {' '.join(key)}", identifier=key[0],
           email=key[1], created=key[2], lifted=True, actor=actor)
    return 0


def init_log(options: argparse.Namespace, settings: dict[str, str]) -> int:
    """``init-log [--witness] [--force]``: print the new key's verifier key."""
    from marketplace.log import keys
    make = keys.init_witness if options.witness else keys.init_log
    signer = make(settings, force=options.force)
    path = keys.witness_key_path(settings) if options.witness else keys.log_key_path(settings)
    vkey = signer.verifier.vkey()
    setting = "the primary's MARKETPLACE_LOG_WITNESSES" if options.witness else \
        "nodes' log_key"
    report(options, f"made {path}; its verifier key, for {setting}:\n{vkey}",
           key_file=str(path), vkey=vkey, name=signer.name)
    return 0


def check_log(options: argparse.Namespace, settings: dict[str, str]) -> int:
    """``check-log``: exit status 1 when the store or its state disagrees with the log."""
    result = log_check(settings)
    if options.json:
        print(json.dumps(result.as_dict()))
    elif not options.quiet:
        for problem in result.problems:
            print(problem)
        print(f"checked {result.size} leaves: " + (
            "the store agrees with the log" if result.ok
            else f"{len(result.problems)} disagreement(s) with the log"))
    return 0 if result.ok else 1


def log_check(settings: dict[str, str]):
    """Compare the store with its log and keep the result for /healthz (``serve`` runs it
    before the workers start)."""
    from marketplace.log.check import check_log, record
    from marketplace.service import open_store
    store = open_store(settings)
    try:
        result = check_log(store)
        record(store.state, result)
    finally:
        store.close()
    return result


def where(settings: dict[str, str]) -> str:
    """Where the store of the settings lives, for messages."""
    if settings["STORE"] == "elasticsearch":
        return (f"Elasticsearch at {settings['ELASTICSEARCH_URL']} (indices "
                f"{settings['ELASTICSEARCH_INDEX_PREFIX']}-*)")
    return settings["DATA_DIR"]


def migrate(options: argparse.Namespace, settings: dict[str, str]) -> int:
    """``migrate --from sqlite:PATH --to elasticsearch[:URL]``."""
    from marketplace.store import migrate as migration
    from marketplace.store.elastic import ElasticStore
    source = migration.sqlite_path(options.source)
    kind, _, url = options.target.partition(":")
    if kind != "elasticsearch":
        raise ValueError(f"--to {options.target!r}: give elasticsearch or elasticsearch:URL")
    target_settings = {**settings, "STORE": "elasticsearch"}
    if url:
        target_settings["ELASTICSEARCH_URL"] = url
    progress = Progress("migrating", None, options.quiet or options.json, unit="entries")
    store = ElasticStore.from_settings(target_settings)
    try:
        done = migration.migrate(source, store, progress)
    finally:
        store.close()
        progress.close()
    if options.json:
        print(json.dumps({**done.as_dict(), "target": where(target_settings)}))
    elif not options.quiet:
        print(f"migrated {done.entries} entries from {source} to {where(target_settings)} in "
              f"{done.seconds:.1f} s: {done.new} new, {done.already_there} already there; it "
              f"holds {done.target_total} entries")
        history = ", ".join(f"{count} {name}" for name, count in done.history.items())
        print(f"history ({history}): " + ("copied and compared with the source" if
                                          done.history_new else "already there, the same "
                                          "as the source's; nothing added"))
    return 0


def import_original(options: argparse.Namespace, settings: dict[str, str]) -> int:
    """``import DIR``: a verdict per file (JSON lines with --json), then a summary."""
    from marketplace.importer import ACCEPTED, REFUSED, import_directory
    from marketplace.service import Marketplace, open_store
    progress = Progress("importing", None, options.quiet or options.json, unit="files")
    marketplace = Marketplace.from_settings(settings, open_store(settings))
    counts = {ACCEPTED: 0, "already there": 0, REFUSED: 0}
    try:
        for verdict in import_directory(marketplace, Path(options.directory), progress):
            counts[verdict.outcome] += 1
            if options.json:
                print(json.dumps(verdict.as_dict()), flush=True)
            elif verdict.outcome == REFUSED and not options.quiet:
                progress.note(f"refused {verdict.path}: {verdict.message} [{verdict.rule}]")
    finally:
        marketplace.close()
        progress.close()
    if not options.json and not options.quiet:
        print(f"imported {options.directory}: {counts[ACCEPTED]} accepted, "
              f"{counts['already there']} already there, {counts[REFUSED]} refused")
    return SOME_REFUSED if counts[REFUSED] else 0


def report(options: argparse.Namespace, text: str, **data) -> None:
    if options.json:
        print(json.dumps(data))
    elif not options.quiet:
        print(text)


def reindex(settings: dict[str, str]) -> int:
    from marketplace.service import open_store
    store = open_store(settings)
    try:
        return store.reindex()
    finally:
        store.close()


def fresh_metrics_dir(settings: dict[str, str]) -> Path:
    """An empty folder for prometheus_client's multiprocess files, named in the environment
    before any worker imports prometheus_client."""
    folder = Path(settings["DATA_DIR"]) / METRICS_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def serve(options: argparse.Namespace, settings: dict[str, str]) -> int:
    """Serve until stopped: gunicorn, or Flask's development server with --debug."""
    if getattr(options, "replica_of", None):
        settings["PRIMARY_URL"] = options.replica_of
        os.environ[config.ENV_PREFIX + "PRIMARY_URL"] = options.replica_of
    fresh_metrics_dir(settings)
    try:
        init_store(settings, migrate=False)
        repair(settings)
        checked = log_check(settings)
        if not checked.ok:
            print(f"warning: the store disagrees with its transparency log in "
                  f"{len(checked.problems)} place(s) (/healthz lists them; run "
                  "`stratus-marketplace check-log`)", file=sys.stderr, flush=True)
    except StoreError as exc:  # e.g. Elasticsearch down: serve 503 until it answers
        print(f"warning: the store is not ready: {exc}", file=sys.stderr, flush=True)
    check_app()
    url = f"http://{options.host}:{options.port}/"
    if options.debug:
        from marketplace.web.app import create_app
        print(f"marketplace (Flask development server) at {url}", flush=True)
        create_app().run(options.host, options.port, debug=True, use_reloader=False)
        return 0
    follower = start_follower(settings)
    try:
        Server(options.host, options.port, options.workers, options.threads).run()
    finally:
        if follower is not None:
            follower.terminate()
            follower.wait(30)
    return 0


def check_app() -> None:
    """Build the app once before any worker starts, so that a setting that cannot work is
    one clear line and exit status 1, not a traceback in each worker after the banner."""
    from marketplace.web.app import create_app
    from marketplace.web.current import marketplace_of
    try:
        marketplace_of(create_app()).close()
    except StoreError as exc:  # the store may come later; the settings are fine
        print(f"warning: the store is not ready: {exc}", file=sys.stderr, flush=True)


def start_follower(settings: dict[str, str]):
    """On a replica, ``replicate`` (following its primary) as a child process: one puller
    per server, not one per gunicorn worker, and no thread in gunicorn's forking master."""
    if not settings["PRIMARY_URL"] or float(settings["REPLICATE_INTERVAL"]) <= 0:
        return None
    import subprocess
    print(f"replica of {settings['PRIMARY_URL']}: pulling every "
          f"{settings['REPLICATE_INTERVAL']} s", flush=True)
    return subprocess.Popen([sys.executable, "-m", "marketplace.cli", "replicate", "-q",
                             "--data-dir", settings["DATA_DIR"]], stdin=subprocess.DEVNULL)


def replicate(options: argparse.Namespace, settings: dict[str, str]) -> int:
    """``replicate [--primary URL] [--once] [--full]``."""
    import logging

    from marketplace.replica import ReplicationError, Replicator
    from marketplace.service import Marketplace, open_store
    primary = options.primary or settings["PRIMARY_URL"]
    if not primary:
        raise ValueError("give --primary URL or set MARKETPLACE_PRIMARY_URL")
    logging.basicConfig(level=logging.WARNING if options.quiet else logging.INFO,
                        format="%(asctime)s replicate %(levelname)s %(message)s")
    from marketplace.log.witness import Witness
    market = Marketplace.from_settings(settings, open_store(settings))
    replicator = Replicator(primary, market,
                            witness=Witness.from_settings(settings, market.store.state))
    try:
        if not options.once:
            replicator.follow(float(settings["REPLICATE_INTERVAL"]) or 60)
            return 0
        try:
            pulled = replicator.pull(full=options.full)
        except ReplicationError as exc:
            raise RuntimeError(f"could not pull from {primary}: {exc}") from None
    finally:
        market.close()
    report(options, f"pulled from {primary} {pulled.summary()}", primary=primary,
           **pulled.as_dict())
    if pulled.witness is not None and "evidence" in pulled.witness:
        print(f"error: {pulled.witness['error']}", file=sys.stderr)
        return SPLIT_VIEW
    return SOME_REFUSED if pulled.refused else 0


def admin_account(options: argparse.Namespace) -> int:
    """Print ``NAME:HASH``; the password is never taken from the command line."""
    import getpass

    from marketplace.moderation.auth import account_line
    if sys.stdin.isatty():
        password = getpass.getpass(f"password of {options.name}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    print(account_line(options.name, password))
    return 0


class Server(BaseApplication):
    """gunicorn running ``create_app()`` in each worker, no preloading: every worker opens
    its own store after the fork, and reads its settings from the environment."""

    def __init__(self, host: str, port: int, workers: int, threads: int):
        self.settings = {
            "bind": [f"{host}:{port}"], "workers": workers, "threads": threads,
            "worker_class": "gthread" if threads > 1 else "sync", "timeout": 60,
            "graceful_timeout": 10, "proc_name": "stratus-marketplace",
            "when_ready": _ready, "child_exit": _child_exit,
            # gunicorn 24+ opens a control socket in ~/.gunicorn by default: one path
            # shared by every server of the user, so two marketplaces would collide.
            "control_socket_disable": True,
            # Should an access log be turned on (GUNICORN_CMD_ARGS), no query strings in
            # it (%(U)s, not %(r)s): the links of confirmation mails carry their token there.
            "access_log_format": '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s '
                                 '%(L)s',
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.settings.items():
            if key in self.cfg.settings:  # older gunicorn lacks some settings
                self.cfg.set(key, value)

    def load(self):
        from marketplace.web.app import create_app
        return create_app()


def _ready(server) -> None:
    for listener in server.LISTENERS:
        print(f"marketplace at {listener}/ (data in "
              f"{os.environ[config.ENV_PREFIX + 'DATA_DIR']}; Ctrl-C stops it)", flush=True)


def _child_exit(server, worker) -> None:
    """Let prometheus_client drop a dead worker's live gauges, and finish what the worker
    may have left half done where the store has no transactions (on Elasticsearch, killed
    between storing an upload and writing its feed row, it leaves an entry that replicas
    would not learn of until the next start; on SQLite it is one transaction)."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
    try:
        repair(config.load())
    except Exception as exc:  # the master outlives a failed repair; the next start retries
        server.log.warning("could not repair the state after worker %s ended: %s",
                           worker.pid, exc)


def demo(options: argparse.Namespace, settings: dict[str, str]) -> int:
    """Fill an empty store with the demo entries, then serve."""
    from marketplace import demo as demo_data
    added = demo_data.populate(settings)
    if added:
        print(f"added {added} signed demo entries to {settings['DATA_DIR']}", flush=True)
    else:
        print(f"the store in {settings['DATA_DIR']} is not empty: no demo entries added",
              flush=True)
    base = f"http://{options.host}:{options.port}"
    print(f"try: {base}/metadata?media=html  {base}/api/v1/appliances?q=ubuntu  "
          f"{base}/endorsers?media=json", flush=True)
    return serve(options, settings)


def run(options: argparse.Namespace) -> int:
    settings = settings_for(options)
    if options.command == "serve":
        return serve(options, settings)
    if options.command == "demo":
        return demo(options, settings)
    if options.command == "migrate":
        return migrate(options, settings)
    if options.command == "import":
        return import_original(options, settings)
    if options.command == "replicate":
        return replicate(options, settings)
    if options.command == "tombstones":
        return tombstones(options, settings)
    if options.command == "lift":
        return lift(options, settings)
    if options.command == "init-log":
        return init_log(options, settings)
    if options.command == "check-log":
        return check_log(options, settings)
    if options.command == "reindex":
        count = reindex(settings)
        repair(settings)  # a removal made while it ran may have come back
        report(options, f"reindexed {count} entries in {where(settings)}", reindexed=count,
               store=where(settings))
        return 0
    count = init_store(settings)
    report(options, f"store ready in {where(settings)} ({count} entries)", entries=count,
           store=where(settings))
    return 0


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        if options.command == "admin-account":
            return admin_account(options)
        return run(options)
    except BrokenPipeError:
        return reader_gone()
    except (ValueError, OSError, StoreError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
