"""stratus-download-image: one verified image into a file (the original sysadmin command).

It resolves the identifier (or marketplace URL) exactly as the cache does -- every entry
verified locally, the node's trust policy applied, the newest acceptable one chosen -- and
downloads, decompresses and verifies the image in one pass into a temporary file beside
the output, which is fsynced and renamed to the output name only once verified.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client.node import errors, shell

DESCRIPTION = """\
Download an appliance image by its identifier (or one entry, <id>/<email>/<created>, or a
marketplace URL), verified: the entries
are checked locally (signature, certificate, trust policy of the fetcher config), the
image's size and strong checksum are checked while it downloads, and the output file
appears only once the bytes are verified. Compressed images (gz, bz2, xz, zst) are written
uncompressed."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stratus-download-image", description=DESCRIPTION,
        epilog=errors.exit_codes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="ID-or-URL",
                        help="image identifier, one entry of it as <id>/<email>/<created> "
                        "(the original's form), or marketplace URL .../metadata/<id>"
                        "[/<email>/<created>]")
    parser.add_argument("-o", "--output", metavar="FILE", type=Path,
                        help="output file or directory (default: the location's file name "
                        "without its compression suffix, else <ID>.img, in the current "
                        "directory)")
    shell.add_common(parser, top=True)
    shell.add_pull_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    return shell.run(_download, options)


def _download(options: argparse.Namespace, out: shell.Output) -> int:
    config = shell.load_config(options)
    from client.node.fetcher import Fetcher

    fetcher = Fetcher(config, progress=out.progress, log=out.note)
    outcome = fetcher.download_to(options.target, options.output)
    if out.json:
        out.emit(outcome.as_dict())
        return errors.OK
    shell.report_resolution(out, outcome.resolution)
    print(f"{outcome.identifier}: {shell.human_size(outcome.size)} from "
          f"{outcome.record['location']}, verified: {outcome.path}")
    return errors.OK


if __name__ == "__main__":
    sys.exit(main())
