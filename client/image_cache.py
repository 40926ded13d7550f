"""stratus-image-cache: the node's cache of verified appliance images.

``path ID`` is what a hypervisor hook calls: on a hit it answers from the cache's record
without hashing or touching the network, and it marks the image in use by the calling
process (its parent) until that process exits, so that no eviction removes it meanwhile.
Only a miss loads the network and XML machinery.
"""

from __future__ import annotations

import argparse
import os
import sys

from client.node import errors, shell
from client.node.config import parse_size
from client.node.target import parse_target

DESCRIPTION = """\
Keep verified appliance images in a local or shared cache. Entries are fetched from the
marketplace and verified locally (signature, certificate, trust policy); images are
downloaded, decompressed and checked (size and a strong checksum) in one pass, and only
verified images enter the cache. Many processes and hosts may share one cache directory."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stratus-image-cache", description=DESCRIPTION,
        epilog=errors.exit_codes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    shell.add_common(parser, top=True)
    _add_cache_dir(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, pulls: bool = False, identifier: str | None = None):
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  epilog=errors.exit_codes_help())
        shell.add_common(sub)
        _add_cache_dir(sub)
        if pulls:
            shell.add_pull_options(sub)
        if identifier == "one":
            sub.add_argument("identifier", metavar="ID",
                             help="image identifier (or marketplace URL of it)")
        elif identifier == "many":
            sub.add_argument("identifiers", metavar="ID", nargs="*",
                             help="image identifiers (default: every cached image)")
        return sub

    command("pull", "get the image into the cache unless it is there (verified)",
            pulls=True, identifier="one")
    path = command("path", "print the cached image's path, pulling it first if needed",
                   pulls=True, identifier="one")
    hold = path.add_mutually_exclusive_group()
    hold.add_argument("--hold-for", type=int, metavar="PID",
                      help="mark the image in use until process PID exits (default: the "
                      "calling process, i.e. this command's parent; img=$(... path ID) in a "
                      "shell script leases to the script)")
    hold.add_argument("--no-hold", action="store_true", help="do not mark the image in use")
    path.add_argument("--no-pull", action="store_true",
                      help="do not download on a miss (exit status 5)")
    command("list", "list the cached images")
    verify = command("verify", "hash cached images again; remove damaged ones",
                     identifier="many")
    verify.add_argument("--keep", action="store_true", help="report damaged images only")
    prune = command("prune", "evict least recently used images down to the quota; clean up")
    prune.add_argument("--quota", metavar="SIZE", help="this quota instead of the config's")
    command("pin", "never evict this image", identifier="one")
    command("unpin", "let this image be evicted again", identifier="one")
    remove = command("remove", "remove an image from the cache", identifier="one")
    remove.add_argument("--force", action="store_true", help="even if pinned or in use")
    subscribe = command("subscribe", "follow a signed HEPiX image list into the cache, as "
                        "vmcatcher does (default: the config's subscriptions)", pulls=True)
    subscribe.add_argument("url", nargs="?", metavar="URL", help="the signed image list")
    subscribe.add_argument("--endorser-dn", metavar="DN", help="the signer the list must have")
    subscribe.add_argument("--ca-dir", metavar="DIR", help="CA certificates (hashed directory "
                           "such as /etc/grid-security/certificates, or a PEM file)")
    show = command("show-config", "print the settings and policy in effect, and the files read")
    show.add_argument("--template", action="store_true",
                      help="print a commented fetcher.cfg with every setting instead")
    return parser


def _add_cache_dir(parser: argparse.ArgumentParser, top: bool = False) -> None:
    parser.add_argument("--cache-dir", metavar="DIR", default=None if top else shell.SUPPRESS,
                        help="the cache directory (else $STRATUSLAB_CACHE_DIR, the config "
                        "file)")


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    return shell.run(_dispatch, options)


def _dispatch(options: argparse.Namespace, out: shell.Output) -> int:
    if options.command == "prune" and options.quota is not None:
        try:
            options.quota_bytes = parse_size(options.quota)
        except ValueError as exc:
            out.error(f"--quota {options.quota}: {exc}")
            return errors.USAGE
    config = shell.load_config(options)
    if options.command in ("pin", "unpin", "remove"):
        options.identifier = parse_target(options.identifier,
                                          config.marketplace_endpoint).identifier
    if options.command == "verify":
        options.identifiers = [parse_target(i, config.marketplace_endpoint).identifier
                               for i in options.identifiers]
    from client.node.fetcher import Fetcher

    fetcher = Fetcher(config, progress=out.progress, log=out.note)
    return COMMANDS[options.command](fetcher, options, out)


def _pull(fetcher, options, out: shell.Output) -> int:
    outcome = fetcher.pull(options.identifier)
    if out.json:
        out.emit(outcome.as_dict())
        return errors.OK
    shell.report_resolution(out, outcome.resolution)
    how = "already cached" if outcome.cached else f"downloaded from {outcome.record['location']}"
    print(f"{outcome.identifier}: {how}, {shell.human_size(outcome.size)}: {outcome.path}")
    return errors.OK


def _path(fetcher, options, out: shell.Output) -> int:
    hold = None if options.no_hold else (options.hold_for or os.getppid())
    outcome = fetcher.pull(options.identifier, hold_for=hold, allow_pull=not options.no_pull)
    if out.json:
        out.emit(outcome.as_dict())
    else:
        shell.report_resolution(out, outcome.resolution)
        sys.stdout.write(f"{outcome.path}\n")
    return errors.OK


def _list(fetcher, options, out: shell.Output) -> int:
    items = fetcher.cache.items() if fetcher.cache.dir("records").is_dir() else []
    total = sum(i.size for i in items)
    quota = fetcher.config.quota
    if out.json:
        out.emit({"cache_dir": str(fetcher.cache.root), "quota": quota, "total": total,
                  "images": [i.as_dict() for i in items]})
        return errors.OK
    for item in sorted(items, key=lambda i: -i.last_used):
        data = item.as_dict()
        flags = ("pinned " if item.pinned else "") + (f"in-use({len(item.leases)})"
                                                      if item.leases else "")
        print(f"{item.identifier}  {shell.human_size(item.size):>10}  used {data['last_used']}"
              f"  {data['endorser'] or '-'}  {flags}".rstrip())
    print(f"{len(items)} image(s), {shell.human_size(total)}"
          + (f" of a {shell.human_size(quota)} quota" if quota else " (no quota)")
          + f" in {fetcher.cache.root}")
    return errors.OK


def _verify(fetcher, options, out: shell.Output) -> int:
    results = fetcher.verify(options.identifiers or None, keep=options.keep)
    damaged = [r for r in results if r["status"] == "damaged"]
    missing = [r for r in results if r["status"] == "not-cached"]
    if out.json:
        out.emit({"results": results})
    else:
        for result in results:
            extra = " (removed)" if result.get("removed") else ""
            print(f"{result['identifier']}: {result['status']}{extra}")
    if damaged:
        return errors.DAMAGED
    return errors.NOT_FOUND if missing else errors.OK


def _prune(fetcher, options, out: shell.Output) -> int:
    evicted, removed = fetcher.prune(getattr(options, "quota_bytes", None))
    if out.json:
        out.emit({"evicted": evicted, "removed_debris": removed,
                  "total": fetcher.cache.usage()})
    else:
        for identifier in evicted:
            print(f"evicted {identifier}")
        for path in removed:
            print(f"removed {path}")
        print(f"the cache holds {shell.human_size(fetcher.cache.usage())}")
    return errors.OK


def _pin(fetcher, options, out: shell.Output) -> int:
    fetcher.cache.pin(options.identifier)
    cached = fetcher.cache.lookup(options.identifier) is not None
    return _done(out, {"identifier": options.identifier, "pinned": True, "cached": cached},
                 f"{options.identifier}: pinned" + ("" if cached else " (not cached yet)"))


def _unpin(fetcher, options, out: shell.Output) -> int:
    was = fetcher.cache.unpin(options.identifier)
    return _done(out, {"identifier": options.identifier, "pinned": False, "was_pinned": was},
                 f"{options.identifier}: " + ("unpinned" if was else "was not pinned"))


def _remove(fetcher, options, out: shell.Output) -> int:
    try:
        gone = fetcher.remove(options.identifier, force=options.force)
    except PermissionError as exc:
        out.error(str(exc))
        if out.json:
            out.emit({"identifier": options.identifier, "removed": False, "error": str(exc)})
        return errors.FAILURE
    if not gone:
        out.error(f"{options.identifier} is not in the cache")
        if out.json:
            out.emit({"identifier": options.identifier, "removed": False})
        return errors.NOT_FOUND
    return _done(out, {"identifier": options.identifier, "removed": True},
                 f"{options.identifier}: removed")


def _show_config(fetcher, options, out: shell.Output) -> int:
    if options.template:
        from client.node.config import template

        sys.stdout.write(template())
        return errors.OK
    data = fetcher.config.as_dict()
    if out.json:
        out.emit(data)
        return errors.OK
    print(f"host: {data['hostname']}")
    print("files read: " + (", ".join(data["files"]) or "none (defaults)"))
    for key, value in data["settings"].items():
        print(f"{key} = {value}")
    for key, values in data["policy"].items():
        if values:
            print(f"{key} = {', '.join(values)}")
    return errors.OK


def _done(out: shell.Output, data: dict, text: str) -> int:
    if out.json:
        out.emit(data)
    else:
        print(text)
    return errors.OK


def _subscribe(fetcher, options, out: shell.Output) -> int:
    from client.node.imagelist import subscribe_command

    return subscribe_command(fetcher, options, out)


COMMANDS = {"pull": _pull, "path": _path, "list": _list, "verify": _verify, "prune": _prune,
            "pin": _pin, "unpin": _unpin, "remove": _remove, "show-config": _show_config,
            "subscribe": _subscribe}


if __name__ == "__main__":
    sys.exit(main())
