# shellcheck shell=bash
# Private apt configuration: reach a newer Debian suite (for CPython sources and the 3.14 headers)
# without touching the machine's own sources. The repository URI is copied from the machine's
# existing apt sources, so no registry host is ever written into this repository.
# Sourced by tools/python.sh and tools/compile_check.sh; expects THRASKS_CACHE to be set.

APT_DIR="$THRASKS_CACHE/apt"
APT_SUITE="${THRASKS_APT_SUITE:-unstable}"

apt_machine_uri() {
    # First URIs: entry of deb822 sources, else the first `deb` line of a one-line sources file.
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
        case "$uri" in *debian*) echo "$uri"; return 0 ;; esac
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp):/) { print $i; exit } }' "$f")
        case "$uri" in *debian*) echo "$uri"; return 0 ;; esac
    done
    return 1
}

apt_opts() {
    printf '%s\n' \
        -o "Dir::Etc::SourceList=$APT_DIR/sources.list" \
        -o "Dir::Etc::SourceParts=$APT_DIR/parts" \
        -o "Dir::State::Lists=$APT_DIR/lists" \
        -o "Dir::Cache=$APT_DIR/cache" \
        -o "Debug::NoLocking=1"
}

apt_private_update() {
    local uri keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    uri=$(apt_machine_uri) || { echo "tools/apt.sh: no Debian URI found in /etc/apt sources" >&2; return 1; }
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/parts"
    cat > "$APT_DIR/sources.list" <<SRC
deb [signed-by=$keyring] $uri $APT_SUITE main
deb-src [signed-by=$keyring] $uri $APT_SUITE main
SRC
    # Refresh at most once a day: the index is ~25 MB.
    if [ -z "$(find "$APT_DIR/lists" -maxdepth 1 -name '*Sources*' -mmin -1440 2>/dev/null)" ]; then
        mapfile -t opts < <(apt_opts)
        apt-get "${opts[@]}" -q update >&2 || return 1
    fi
}

# apt_versions KIND PACKAGE: versions the private index lists, newest first (KIND: showsrc | show).
apt_versions() {
    mapfile -t opts < <(apt_opts)
    apt-cache "${opts[@]}" "$1" "$2" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -rV | uniq
}

apt_private() {
    mapfile -t opts < <(apt_opts)
    "$1" "${opts[@]}" "${@:2}"
}
