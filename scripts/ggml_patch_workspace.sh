#!/usr/bin/env bash
# Work on the ggml patch series (csrc/patches) and our own ggml sources (csrc/ggml-ext) as
# git commits in one ggml tree.
#
#   scripts/ggml_patch_workspace.sh init DIR [PRISTINE_GGML]
#       Copy a pristine ggml tree to DIR and make it a git repository: one commit tagged
#       "upstream", one tagged "ext" that adds csrc/ggml-ext/<name>/<path> as
#       src/ggml-<name>/<path> (as the build does), then csrc/patches/*.patch with git am,
#       one commit per patch. PRISTINE_GGML defaults to $PYGGML_GGML_SOURCE_DIR, then the
#       ggml/ submodule, then the cached sdist tree the build uses ($PYGGML_CACHE_DIR,
#       $XDG_CACHE_HOME/pyggml_train or ~/.cache/pyggml_train, subdirectory ggml-<commit>).
#
#   scripts/ggml_patch_workspace.sh export DIR
#       Regenerate the whole series from DIR in one run: every file DIR adds under
#       src/ggml-<name>/ goes (back) to csrc/ggml-ext/<name>/, every change to an upstream
#       file becomes `git format-patch upstream..HEAD` (one patch per commit that changes
#       upstream files). Checks first that the new series applies in order to the upstream
#       commit and, with the new csrc/ggml-ext, gives exactly DIR's tree.
#
# Edit in DIR with ordinary git: commit, `git rebase -i ext` to amend an earlier
# patch, reorder or split. One final change per commit; the commit message becomes the
# patch description, so say why. The pin (commit and fallback sdist) is read from
# cmake/GgmlPin.cmake.

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATCH_DIR=$REPO_ROOT/csrc/patches
EXT_DIR=$REPO_ROOT/csrc/ggml-ext

die() { echo "ggml_patch_workspace: $*" >&2; exit 1; }
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# pin_value NAME: the value of set(NAME "...") in cmake/GgmlPin.cmake
pin_value() {
    local v
    v=$(sed -n "s/^set($1 \"\\([^\"]*\\)\")\$/\\1/p" "$REPO_ROOT/cmake/GgmlPin.cmake")
    [[ -n "$v" ]] || die "cmake/GgmlPin.cmake does not set $1"
    echo "$v"
}
GGML_COMMIT=$(pin_value PYGGML_GGML_COMMIT)
GGML_VERSION=$(pin_value PYGGML_GGML_VERSION)

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

# ext_files: csrc/ggml-ext's sources relative to it (<name>/<path>; its README stays out)
ext_files() { [[ -d "$EXT_DIR" ]] && (cd "$EXT_DIR" && find . -mindepth 2 -type f | sed 's|^\./||' | sort); }
# ext_to_tree <name>/<path> -> src/ggml-<name>/<path>, and back
ext_to_tree() { echo "src/ggml-$1"; }
tree_to_ext() { [[ "$1" == src/ggml-*/* ]] || return 1; echo "${1#src/ggml-}"; }

cmd_init() {
    local dir=$1 src f
    src=$(find_pristine "${2:-}")
    [[ -f "$src/include/ggml.h" ]] || die "$src is not a ggml source tree"
    [[ ! -e "$dir" ]] || die "$dir already exists"

    mkdir -p "$dir"
    # copy without any .git of the source (a submodule checkout has one)
    (cd "$src" && tar --exclude=.git -cf - .) | (cd "$dir" && tar -xf -)
    rm -f "$dir/.pyggml-sdist-sha256" "$dir/.pyggml-patch-stamp" "$dir/.pyggml-patches"

    git -C "$dir" init -q
    git_ws "$dir" add -A
    local what="ggml ${GGML_COMMIT:0:12} ($GGML_VERSION, cmake/GgmlPin.cmake)"
    [[ -z "${2:-}" ]] || what="ggml from $src"
    git_ws "$dir" commit -q -m "upstream $what"
    git -C "$dir" tag upstream

    while read -r f; do
        [[ -n "$f" ]] || continue
        [[ ! -e "$dir/$(ext_to_tree "$f")" ]] || die "csrc/ggml-ext/$f would replace ggml's own $(ext_to_tree "$f")"
        mkdir -p "$(dirname "$dir/$(ext_to_tree "$f")")"
        cp "$EXT_DIR/$f" "$dir/$(ext_to_tree "$f")"
    done < <(ext_files)
    git_ws "$dir" add -A
    git_ws "$dir" commit -q --allow-empty -m "pyggml_train's own sources from csrc/ggml-ext (export copies them back)"
    git -C "$dir" tag ext

    shopt -s nullglob
    local patches=("$PATCH_DIR"/*.patch)
    if (( ${#patches[@]} )); then
        git_ws "$dir" am -q "${patches[@]}" || die "git am failed in $dir (see 'git -C $dir am --show-current-patch')"
    fi
    echo "ggml_patch_workspace: $dir: upstream + csrc/ggml-ext + ${#patches[@]} patches"
    git -C "$dir" log --oneline ext..HEAD
}

cmd_export() {
    local dir=$1 f
    git -C "$dir" rev-parse -q --verify upstream > /dev/null || die "$dir has no 'upstream' tag (create it with init)"
    [[ -z "$(git -C "$dir" status --porcelain --untracked-files=no)" ]] || die "$dir has uncommitted changes"

    # files HEAD adds to upstream are ours: they go to csrc/ggml-ext, not into patches
    local added=() excludes=()
    while read -r f; do
        [[ -n "$f" ]] || continue
        tree_to_ext "$f" > /dev/null || die "$f is a new file outside src/ggml-<name>/: give it a place in csrc/ggml-ext/ or change an upstream file instead"
        added+=("$f")
        excludes+=(":(exclude)$f")
    done < <(git -C "$dir" diff --name-only --diff-filter=A upstream HEAD)

    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # --zero-commit, --no-signature and --no-numbered keep every file stable across
    # re-exports (adding a patch renames none of the others' subjects); the pathspec leaves
    # our own files out, so a commit that only touches them gives no patch
    git -C "$dir" format-patch -q --zero-commit --no-signature --no-numbered -o "$tmp/series" \
        upstream..HEAD -- . "${excludes[@]}"
    for f in "${added[@]}"; do
        mkdir -p "$(dirname "$tmp/ext/$(tree_to_ext "$f")")"
        git -C "$dir" show "HEAD:$f" > "$tmp/ext/$(tree_to_ext "$f")"
    done

    # the new series must apply, in order, to the upstream commit, and with our files
    # beside it give exactly the workspace's tree
    git -C "$dir" archive --format=tar upstream | (mkdir -p "$tmp/check" && cd "$tmp/check" && tar -xmf -)
    shopt -s nullglob
    local p
    for p in "$tmp"/series/*.patch; do
        (cd "$tmp/check" && GIT_CEILING_DIRECTORIES="$tmp" git apply --whitespace=nowarn "$p") \
            || die "$(basename "$p") does not apply to upstream; csrc/patches left unchanged"
    done
    for f in "${added[@]}"; do
        mkdir -p "$(dirname "$tmp/check/$f")"
        cp "$tmp/ext/$(tree_to_ext "$f")" "$tmp/check/$f"
    done
    git -C "$dir" archive --format=tar HEAD | (mkdir -p "$tmp/head" && cd "$tmp/head" && tar -xmf -)
    diff -r "$tmp/head" "$tmp/check" > "$tmp/diff" \
        || { cat "$tmp/diff" >&2; die "series + csrc/ggml-ext differ from $dir's HEAD; nothing exported"; }

    rm -f "$PATCH_DIR"/*.patch
    mkdir -p "$PATCH_DIR"
    cp "$tmp"/series/*.patch "$PATCH_DIR"/ 2> /dev/null || true
    while read -r f; do
        [[ -n "$f" ]] && rm -f "$EXT_DIR/$f"
    done < <(ext_files)
    if [[ -d "$tmp/ext" ]]; then
        mkdir -p "$EXT_DIR"
        cp -r "$tmp/ext/." "$EXT_DIR/"
    fi
    find "$EXT_DIR" -mindepth 1 -type d -empty -delete 2> /dev/null || true
    echo "ggml_patch_workspace: exported to $PATCH_DIR:"
    (cd "$PATCH_DIR" && ls -1 ./*.patch 2> /dev/null | sed 's|^\./|  |')
    echo "ggml_patch_workspace: and to $EXT_DIR:"
    ext_files | sed 's|^|  |'
}

[[ $# -ge 2 ]] || usage
case "$1" in
    init)   [[ $# -le 3 ]] || usage; cmd_init "$2" "${3:-}" ;;
    export) [[ $# -eq 2 ]] || usage; cmd_export "$2" ;;
    *)      usage ;;
esac
