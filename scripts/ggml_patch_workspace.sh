#!/usr/bin/env bash
# Work on the ggml patch series (csrc/patches) as git commits.
#
#   scripts/ggml_patch_workspace.sh init DIR [PRISTINE_GGML]
#       Copy a pristine ggml tree to DIR, make it a git repository with one commit
#       tagged "upstream", and apply csrc/patches/*.patch on top with git am, one commit
#       per patch. PRISTINE_GGML defaults to $PYGGML_GGML_SOURCE_DIR, then the ggml/
#       submodule, then the cached sdist tree the build uses
#       ($PYGGML_CACHE_DIR, $XDG_CACHE_HOME/pyggml_train or ~/.cache/pyggml_train,
#       subdirectory ggml-<commit>).
#
#   scripts/ggml_patch_workspace.sh export DIR
#       Replace csrc/patches/*.patch with `git format-patch upstream..HEAD` of DIR, then
#       check that the new series applies with git apply to a fresh copy of the upstream
#       commit.
#
# Edit the series in DIR with ordinary git: commit, `git rebase -i upstream` to amend an
# earlier patch, reorder or split. One logical change per commit; the commit message
# becomes the patch description, so say why.

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATCH_DIR=$REPO_ROOT/csrc/patches
GGML_COMMIT=eced84c86f8b012c752c016f7fe789adea168e1e

die() { echo "ggml_patch_workspace: $*" >&2; exit 1; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# git settings that do not depend on the user's configuration
git_ws() { git -C "$1" -c user.name=pyggml -c user.email=pyggml@localhost -c core.autocrlf=false "${@:2}"; }

find_pristine() {
    if [[ -n "${1:-}" ]]; then echo "$1"; return; fi
    if [[ -n "${PYGGML_GGML_SOURCE_DIR:-}" ]]; then echo "$PYGGML_GGML_SOURCE_DIR"; return; fi
    if [[ -f "$REPO_ROOT/ggml/CMakeLists.txt" ]]; then echo "$REPO_ROOT/ggml"; return; fi
    local cache=${PYGGML_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pyggml_train}
    if [[ -f "$cache/ggml-$GGML_COMMIT/include/ggml.h" ]]; then echo "$cache/ggml-$GGML_COMMIT"; return; fi
    die "no pristine ggml tree found: pass one as PRISTINE_GGML, set PYGGML_GGML_SOURCE_DIR, check out the ggml/ submodule, or configure the project once so the build caches it"
}

cmd_init() {
    local dir=$1 src
    src=$(find_pristine "${2:-}")
    [[ -f "$src/include/ggml.h" ]] || die "$src is not a ggml source tree"
    [[ ! -e "$dir" ]] || die "$dir already exists"

    mkdir -p "$dir"
    # copy without any .git of the source (a submodule checkout has one)
    (cd "$src" && tar --exclude=.git -cf - .) | (cd "$dir" && tar -xf -)
    rm -f "$dir/.pyggml-sdist-sha256" "$dir/.pyggml-patch-stamp" "$dir/.pyggml-patches"

    git -C "$dir" init -q
    git_ws "$dir" add -A
    git_ws "$dir" commit -q -m "upstream ggml ${GGML_COMMIT:0:12} (v0.15.3)"
    git -C "$dir" tag upstream

    shopt -s nullglob
    local patches=("$PATCH_DIR"/*.patch)
    if (( ${#patches[@]} )); then
        git_ws "$dir" am -q "${patches[@]}" || die "git am failed in $dir (see 'git -C $dir am --show-current-patch')"
    fi
    echo "ggml_patch_workspace: $dir: upstream + ${#patches[@]} patches"
    git -C "$dir" log --oneline upstream..HEAD
}

cmd_export() {
    local dir=$1
    git -C "$dir" rev-parse -q --verify upstream > /dev/null || die "$dir has no 'upstream' tag (create it with init)"
    [[ -z "$(git -C "$dir" status --porcelain --untracked-files=no)" ]] || die "$dir has uncommitted changes"

    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # --zero-commit and --no-signature keep the files stable across re-exports
    git -C "$dir" format-patch -q --zero-commit --no-signature upstream..HEAD -o "$tmp/series"

    # the new series must apply, in order, to the upstream commit
    git -C "$dir" archive --format=tar upstream | (mkdir -p "$tmp/check" && cd "$tmp/check" && tar -xf -)
    shopt -s nullglob
    local p
    for p in "$tmp"/series/*.patch; do
        (cd "$tmp/check" && GIT_CEILING_DIRECTORIES="$tmp" git apply --whitespace=nowarn "$p") \
            || die "$(basename "$p") does not apply to upstream; csrc/patches left unchanged"
    done

    rm -f "$PATCH_DIR"/*.patch
    mkdir -p "$PATCH_DIR"
    cp "$tmp"/series/*.patch "$PATCH_DIR"/ 2> /dev/null || true
    echo "ggml_patch_workspace: exported to $PATCH_DIR:"
    (cd "$PATCH_DIR" && ls -1 ./*.patch 2> /dev/null | sed 's|^\./|  |')
}

[[ $# -ge 2 ]] || usage
case "$1" in
    init)   [[ $# -le 3 ]] || usage; cmd_init "$2" "${3:-}" ;;
    export) [[ $# -eq 2 ]] || usage; cmd_export "$2" ;;
    *)      usage ;;
esac
