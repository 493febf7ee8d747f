#!/bin/sh
# Start as linuxserver-style images do: as root just long enough to give CACHE_DIR and
# DATA_DIR to PUID:PGID (bind mounts that Docker created as root), then run the server as
# that user, with UMASK and the supplementary groups that reach the GPU (/dev/dri, group_add).
# Started with `--user` (not root), it changes nothing and runs the command as given.
set -eu

umask "${UMASK:-022}"
export TZ="${TZ:-UTC}"

if [ "$(id -u)" != "0" ]; then
    exec "$@"
fi

PUID="${PUID:-1000}"
PGID="${PGID:-1000}"
case "$PUID$PGID" in
    *[!0-9]*) echo "entrypoint: PUID and PGID must be numbers (got '$PUID', '$PGID')" >&2; exit 2 ;;
esac

for dir in "${CACHE_DIR:-/cache}" "${DATA_DIR:-/data}"; do
    mkdir -p "$dir"
    # only what is not already theirs: a large cache is not walked file by file twice.
    # -h: a link is given away itself, never what it points at (anyone who can write the
    # volume could leave one to /etc/shadow); find does not follow links (-P) either
    if ! find -P "$dir" ! \( -user "$PUID" -group "$PGID" \) -exec chown -h "$PUID:$PGID" {} + 2>/dev/null; then
        echo "entrypoint: could not give $dir to $PUID:$PGID (read-only or root-squashed share?)" >&2
    fi
done

# Keep the groups Docker gave (group_add: the host's render group) and add the owners of
# the render nodes, so that VAAPI/QSV work as the dropped user; never keep root's group 0.
groups="$PGID"
for gid in $(id -G) $(stat -c %g /dev/dri/* 2>/dev/null); do
    case "$gid" in
        0) ;;
        *) case ",$groups," in *",$gid,"*) ;; *) groups="$groups,$gid" ;; esac ;;
    esac
done

export HOME="${DATA_DIR:-/data}"
exec setpriv --reuid="$PUID" --regid="$PGID" --groups="$groups" --inh-caps=-all -- "$@"
