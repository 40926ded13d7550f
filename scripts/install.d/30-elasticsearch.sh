#!/usr/bin/env bash
# Elasticsearch for the tests of the Elasticsearch store (run as root by scripts/install-deps;
# safe to run again).
#
# No registry here serves Elasticsearch as a Debian or PyPI package, but Maven Central serves
# its test distribution, org.elasticsearch.distribution.integ-test-zip:elasticsearch, a zip
# with bin/elasticsearch (no bundled JDK: it runs on the machine's Java 17). This script:
#   1. installs Java 17+ and Maven from Debian if they are missing;
#   2. fetches the zip with Maven (kept in ~/.m2) and unpacks it under $MARKETPLACE_ES_CACHE
#      (default /var/cache/marketplace-es), skipped when that version is already there;
#   3. creates the unprivileged user `elastic` (Elasticsearch refuses to run as root): the
#      test fixtures (tests/elastic.py) start the server as that user;
#   4. installs the Python client (major 8, the server's) in case the test extra did not.
set -euo pipefail
cd "$(dirname "$0")/../.."
ES_VERSION="${MARKETPLACE_ES_VERSION:-8.19.21}"
CACHE="${MARKETPLACE_ES_CACHE:-/var/cache/marketplace-es}"
HOME_DIR="$CACHE/elasticsearch-$ES_VERSION"
export DEBIAN_FRONTEND=noninteractive

java_major() {
    java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1
}

need=()
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
    need+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x "$HOME_DIR/bin/elasticsearch" ]; then
    artifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip"
    echo "fetching Elasticsearch $ES_VERSION from Maven Central ($artifact)" >&2
    mkdir -p "$CACHE"
    scratch="$(mktemp -d "$CACHE/unpack.XXXXXX")"
    trap 'rm -rf "$scratch"' EXIT
    # Maven keeps the download in its local repository (~/.m2) and copies it here.
    mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$artifact" -DoutputDirectory="$scratch"
    unzip -q "$scratch/elasticsearch-$ES_VERSION.zip" -d "$scratch"
    rm -rf "$HOME_DIR"
    mv "$scratch/elasticsearch-$ES_VERSION" "$HOME_DIR"
    rm -rf "$scratch"
fi
# Readable by everyone (the server runs as `elastic`); each test run copies config/ to a
# temporary folder of its own, so nothing here needs to be writable.
chmod -R a+rX "$HOME_DIR"

if ! id elastic >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin elastic
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    'elasticsearch>=8,<9'
echo "Elasticsearch $ES_VERSION ready in $HOME_DIR" >&2
