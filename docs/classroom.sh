#!/bin/sh
# Build the classroom folder: one read-only folder that every student points VFS_SHARED_DIR at.
#
#   sh docs/classroom.sh /srv/vfs-course
#
# It holds the two annotation sets (annotations/v1, annotations/v2: the copies named by
# VFS_ANNOTATION_DIR and VFS_ANNOTATION_DIR_V2, else `vfs fetch` downloads them) and the
# phantom demo dataset the lessons use (demo/phantom, rendered by `vfs prepare`), then it is
# made read-only. About 1.0 GB; 14-65 s to render on a 2-core machine. See docs/book/classroom.md.
set -eu
DIR=${1:?usage: sh docs/classroom.sh FOLDER}
VFS=${VFS:-vfs}
start=$(date +%s)
mkdir -p "$DIR/annotations"
DIR=$(cd "$DIR" && pwd)
copy() {   # copy() VERSION FOLDER: the annotation files, nothing else
    mkdir -p "$DIR/annotations/$1"
    cp "$2"/*.json "$DIR/annotations/$1/"
}
if [ -n "${VFS_ANNOTATION_DIR:-}" ] && [ -n "${VFS_ANNOTATION_DIR_V2:-}" ]; then
    copy v1 "$VFS_ANNOTATION_DIR"
    copy v2 "$VFS_ANNOTATION_DIR_V2"
else
    env -u VFS_ANNOTATION_DIR -u VFS_ANNOTATION_DIR_V2 VFS_CACHE_DIR="$DIR" "$VFS" fetch
fi
# the folder is the builder's cache: prepare finds the annotations there and renders demo/phantom
env -u VFS_ANNOTATION_DIR -u VFS_ANNOTATION_DIR_V2 -u VFS_SHARED_DIR -u VFS_DATA_ROOT \
    VFS_CACHE_DIR="$DIR" "$VFS" prepare
for root in "$DIR"/demo/*/; do   # the series index students read (they write none)
    env -u VFS_SHARED_DIR VFS_CACHE_DIR="$DIR" "$VFS" index "$root" >/dev/null
done
rm -rf "$DIR/.download-failed"   # a per-user note, not shared
chmod -R a-w "$DIR"
echo "classroom folder: $DIR ($(du -sh "$DIR" | cut -f1), $(( $(date +%s) - start )) s)."
echo "Students: export VFS_SHARED_DIR=$DIR (then \`vfs doctor\` says 'shared, read-only')."
