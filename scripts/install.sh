#!/usr/bin/env bash
# Builds Vigil (release) and installs it under PREFIX (default /usr/local):
#   PREFIX/bin/{vigild,vigil,vigilctl,vigil-bench}
#   PREFIX/lib/systemd/system/{vigild.service,vigild.socket}  (as docs/systemd.md shows them)
#   PREFIX/share/man/man1/*.1                                  (from each tool's --help, by swift-argument-parser)
#   PREFIX/share/bash-completion/completions/, zsh/site-functions/, fish/vendor_completions.d/
#   PREFIX/share/doc/vigil/*.md
#
#   scripts/install.sh [PREFIX]          DESTDIR=/tmp/pkg scripts/install.sh /usr   (staged, for packaging)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:-/usr/local}"
dest="${DESTDIR:-}"
root="$dest$prefix"
tools=(vigild vigil vigilctl vigil-bench)

scripts/setup.sh
swift build -c release
bin="$(swift build -c release --show-bin-path)"

install -d "$root/bin" "$root/share/man/man1" "$root/lib/systemd/system" "$root/share/doc/vigil" \
    "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" "$root/share/fish/vendor_completions.d"
for t in "${tools[@]}"; do
    install -m 0755 "$bin/$t" "$root/bin/$t"
    "$bin/$t" --generate-completion-script bash >"$root/share/bash-completion/completions/$t"
    "$bin/$t" --generate-completion-script zsh >"$root/share/zsh/site-functions/_$t"
    "$bin/$t" --generate-completion-script fish >"$root/share/fish/vendor_completions.d/$t.fish"
done

# Man pages: swift-argument-parser's generate-manual plugin reads each
# tool's --experimental-dump-help; one page per command and subcommand.
man_tmp="$(mktemp -d)"
trap 'rm -rf "$man_tmp"' EXIT
swift package --allow-writing-to-directory "$man_tmp" generate-manual --multi-page --output-directory "$man_tmp" >/dev/null
find "$man_tmp" -name '*.1' -exec install -m 0644 {} "$root/share/man/man1/" \;

# The unit files are the ones docs/systemd.md explains line by line: the
# first ```ini block is vigild.service, the second vigild.socket.
awk -v out="$root/lib/systemd/system" -v bindir="$prefix/bin" '
    /^```ini$/ { n++; f = out "/" (n == 1 ? "vigild.service" : "vigild.socket"); inblock = 1; next }
    /^```$/ && inblock { inblock = 0; close(f); next }
    inblock && n <= 2 { gsub("/usr/local/bin", bindir); print > f }
' docs/systemd.md
chmod 0644 "$root/lib/systemd/system/vigild.service" "$root/lib/systemd/system/vigild.socket"
install -m 0644 docs/*.md "$root/share/doc/vigil/"

echo "installed into $root:" >&2
echo "  ${tools[*]} in $prefix/bin; units in $prefix/lib/systemd/system (systemctl daemon-reload; systemctl enable --now vigild.socket)" >&2
