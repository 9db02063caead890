#!/usr/bin/env bash
# Checks the Prometheus configuration the docs tell people to paste: every fenced ```yaml
# block whose preceding line is `<!-- promtool -->` in README.md and docs/serve.md (or the
# files given) must pass `promtool check config`.
#   * a block that is a whole prometheus.yml (top-level keys) is checked as it is;
#   * a list of scrape configs (`- job_name: ...`) or a single one (`job_name: ...`) is
#     wrapped in `scrape_configs:`;
#   * file names (credentials_file, bearer_token_file, password_file, ca_file, cert_file,
#     key_file) are pointed at dummy files in a temp dir, because promtool checks that they
#     exist.
# Offline, no Prometheus server. promtool from $PROMTOOL, else PATH, else Debian's prometheus
# package (scripts/peers/prometheus.sh install). Called by scripts/check-deploy.sh.
#
#   scripts/check-docs-prometheus.sh [FILE.md ...]     exit 0 when every block passes
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

fail() { echo "check-docs-prometheus: FAILED: $*" >&2; exit 1; }

PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}
if [[ -z $PROMTOOL ]]; then
  PROMTOOL=$(scripts/peers/prometheus.sh install | tail -n 1)
fi
[[ -x $PROMTOOL ]] || fail "promtool not found (scripts/peers/prometheus.sh install)"

DOCS=("$@")
[[ ${#DOCS[@]} -gt 0 ]] || DOCS=(README.md docs/serve.md)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/skydeck-check-docs-prometheus.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# Extract: one prometheus.yml per marked block, and a manifest "file<TAB>doc:line".
python3 - "$TMP" "${DOCS[@]}" >"$TMP/manifest" <<'PYEOF'
import os
import re
import sys

tmp, docs = sys.argv[1], sys.argv[2:]
FILE_KEYS = r"(?:credentials_file|bearer_token_file|password_file|ca_file|cert_file|key_file)"
file_re = re.compile(r"^(\s*(?:-\s+)?" + FILE_KEYS + r"\s*:\s*)(['\"]?)([^'\"\s#]+)\2(.*)$")
n = 0


def dummy(path):
    """A dummy file standing in for `path` (absolute or relative), created on first use."""
    local = os.path.join(tmp, "files", path.lstrip("/").replace("..", "__"))
    os.makedirs(os.path.dirname(local), exist_ok=True)
    if not os.path.exists(local):
        with open(local, "w") as f:
            f.write("dummy-credential\n")
    return local


for doc in docs:
    with open(doc) as f:
        lines = f.read().split("\n")
    found = 0
    i = 0
    while i < len(lines):
        if lines[i].strip() != "<!-- promtool -->":
            i += 1
            continue
        marker = i + 1
        j = i + 1
        if j >= len(lines) or not re.fullmatch(r"\s*```ya?ml\s*", lines[j]):
            sys.exit(f"{doc}:{marker}: `<!-- promtool -->` is not followed by a ```yaml block")
        indent = len(lines[j]) - len(lines[j].lstrip())
        body = []
        j += 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        if j >= len(lines):
            sys.exit(f"{doc}:{marker}: unterminated ```yaml block")
        body = [file_re.sub(lambda m: f"{m.group(1)}{dummy(m.group(3))}{m.group(4)}", l) for l in body]
        first = next((l for l in body if l.strip() and not l.lstrip().startswith("#")), "")
        if first.startswith("- "):
            text = "scrape_configs:\n" + "\n".join("  " + l if l else l for l in body)
        elif first.startswith("job_name:"):
            text = "scrape_configs:\n" + "\n".join(("  - " if k == body.index(first) else "    ") + l if l else l
                                                   for k, l in enumerate(body))
        else:
            text = "\n".join(body)
        n += 1
        found += 1
        out = os.path.join(tmp, f"{n:02d}-{os.path.basename(doc)}-{marker + 1}.yml")
        with open(out, "w") as f:
            f.write(text + "\n")
        print(f"{out}\t{doc}:{marker + 1}")
        i = j + 1
    if found == 0 and os.path.basename(doc) == "serve.md":
        sys.exit(f"{doc}: no `<!-- promtool -->` block (the Prometheus snippets lost their marker?)")
PYEOF

count=0
while IFS=$'\t' read -r file where; do
  count=$((count + 1))
  if out=$("$PROMTOOL" check config "$file" 2>&1); then
    echo "    $where: ok ($(grep -c 'job_name:' "$file") scrape configs)"
  else
    echo "$out" | sed 's/^/    /' >&2
    echo "    --- $where, as checked:" >&2
    cat -n "$file" | sed 's/^/    /' >&2
    fail "$where: promtool check config rejected it"
  fi
done <"$TMP/manifest"
[[ $count -gt 0 ]] || fail "no <!-- promtool --> blocks in ${DOCS[*]}"
echo "check-docs-prometheus: OK ($count blocks, $("$PROMTOOL" --version 2>&1 | head -n 1))"
