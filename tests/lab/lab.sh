#!/usr/bin/env bash
# tests/lab/lab.sh - multi-host libvirt lab for migration and remote-hypervisor tests.
#
# Builds up to three more libvirt "hosts" on this machine, each one:
#   * a network namespace joined to the main host by a veth pair
#       main side  <main veth>  NET.(4i+1)/30  (i = 0 for host2, 1 for host3, 2 for host4)
#       lab side   <lab veth>   NET.(4i+2)/30  (inside the netns)
#     plus an unnumbered veth pair to every other running lab host (one /32
#     route each way), so lab hosts reach each other directly, and the main
#     host address NET.1 is reachable from every lab host
#   * private mount + UTS namespaces, kept alive by a "holder" process
#     (sleep infinity) whose pid is recorded in <state dir>/holder.pid
#   * private /run/libvirt (tmpfs), /etc/libvirt, /var/lib/libvirt/qemu,
#     /var/log/libvirt, /var/cache/libvirt, /etc/hosts and a /sys showing the
#     lab netns
#   * its own hostname and a fixed host_uuid (generated once, kept in the
#     state dir), its own virtlogd + libvirtd
#
#   host2, host3: /var/lib/libvirt/images SHARED with the main host ("shared
#                 storage"); libvirtd TCP listener on the lab address
#   host4:        PRIVATE /var/lib/libvirt/images (a bind mount of its state
#                 dir) with a "default" pool on it; no TCP listener, reached
#                 through a real sshd on the lab address (qemu+ssh://); its host
#                 key goes into root's known_hosts while it runs. Its libvirtd
#                 also listens with TLS (qemu+tls://, port 16514, lab address
#                 only): a throwaway CA, server and client certificate made on
#                 every start in its state dir; clients present the client
#                 certificate (URI parameter pkipath=, nothing in /etc/pki)
#
# Usage: lab.sh start|stop|status|purge|uris|env [HOST...]   (HOST: host2 host3 host4; default all)
#   exit codes: 0 ok / running, 1 error, 2 usage, 3 not running (status)
# See tests/lab/README.md.

set -eu

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

NETNS_BASE=${KVMLAB_NETNS:-kvmlab}
NET=${KVMLAB_NET:-10.254.77}
STATE_BASE=${KVMLAB_STATE_BASE:-/var/lib/kvmops-lab}
HOSTNAME_PREFIX=${KVMLAB_HOSTNAME_PREFIX:-kvmlab-}
TIMEOUT=${KVMLAB_TIMEOUT:-60}
KEEP_ON_FAILURE=${KVMLAB_KEEP_ON_FAILURE:-0}

ALL_HOSTS="host2 host3 host4"
PREFIXLEN=30
MAIN_ADDR="$NET.1"
MAIN_URI="qemu:///system"
# Private directories bind-mounted over the host paths inside the lab
# mount namespace: "<dir under the state dir>:<host path>".
BIND_DIRS_COMMON="etc:/etc/libvirt lib-qemu:/var/lib/libvirt/qemu log:/var/log/libvirt cache:/var/cache/libvirt"
IMAGES=/var/lib/libvirt/images
# Environment for everything started inside the lab (nothing leaks from the
# caller, e.g. LIBVIRT_DEFAULT_URI).
CLEAN_ENV="PATH=$PATH HOME=/root LANG=C.UTF-8"

prog=${0##*/}
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $prog start|stop|status|purge|uris|env [HOST...]
  HOST    host2, host3 or host4 (default: all three)
  start   build the lab (idempotent; repairs/cleans a half-started host first)
  stop    tear everything down: guests on the lab hosts, daemons, namespaces, veths
  status  exit 0 if every named host is fully running, 3 if not (partial == not)
  purge   stop, then delete the state dirs (incl. host_uuid and logs)
  uris    print the connection URIs
  env     print the URIs and addresses as shell assignments (KVMLAB_HOST2_URI=...)
EOF
    exit 2
}

# ---------------------------------------------------------------- validation
valid_name() {   # interface / netns names
    case $1 in
        '' | *[!A-Za-z0-9_.-]*) return 1 ;;
    esac
    [ "${#1}" -le 15 ]
}
valid_hostname() {
    case $1 in
        '' | -* | *[!A-Za-z0-9.-]*) return 1 ;;
    esac
    [ "${#1}" -le 63 ]
}

validate_config() {
    # the longest derived names: "<base>4" (netns) and "<base>5" (veth)
    valid_name "${NETNS_BASE}5" || die "bad KVMLAB_NETNS (letters, digits, _ . -; at most 14 characters): $NETNS_BASE"
    case $NET in
        *[!0-9.]* | *..* | .* | *.) die "bad KVMLAB_NET (three octets, e.g. 10.254.77): $NET" ;;
    esac
    # shellcheck disable=SC2046  # word splitting on '.' is intended
    set -- $(printf '%s' "$NET" | tr '.' ' ')
    [ $# -eq 3 ] || die "bad KVMLAB_NET (three octets, e.g. 10.254.77): $NET"
    for o in "$@"; do
        [ "$o" -le 255 ] 2>/dev/null || die "bad KVMLAB_NET: $NET"
    done
    valid_hostname "${HOSTNAME_PREFIX}host2" || die "bad KVMLAB_HOSTNAME_PREFIX: $HOSTNAME_PREFIX"
    case $TIMEOUT in
        '' | *[!0-9]*) die "bad KVMLAB_TIMEOUT: $TIMEOUT" ;;
    esac
    case $STATE_BASE in
        /?*) ;;
        *) die "KVMLAB_STATE_BASE must be an absolute path: $STATE_BASE" ;;
    esac
    case $STATE_BASE in
        *[!A-Za-z0-9_./-]* | */../* | */.. | */./* | */.) die "bad KVMLAB_STATE_BASE: $STATE_BASE" ;;
        / | /var | /var/lib | /etc | /usr | /run | /tmp | /root) die "refusing KVMLAB_STATE_BASE $STATE_BASE" ;;
    esac
}

# -------------------------------------------------------------- the hosts
host_index() {   # host2 -> 0, host3 -> 1, host4 -> 2
    case $1 in
        host2) echo 0 ;;
        host3) echo 1 ;;
        host4) echo 2 ;;
        *) return 1 ;;
    esac
}
netns_of() { if [ "$1" -eq 0 ]; then echo "$NETNS_BASE"; else echo "$NETNS_BASE$(($1 + 2))"; fi; }
lab_addr_of() { echo "$NET.$((4 * $1 + 2))"; }
main_side_addr_of() { echo "$NET.$((4 * $1 + 1))"; }

# Set the globals every function below works on, for one lab host.
select_host() {
    HOST=$1
    IDX=$(host_index "$1") || die "unknown host: $1 (host2, host3 or host4)"
    NETNS=$(netns_of "$IDX")
    STATE_DIR=$STATE_BASE/$HOST
    HOST_ADDR=$(main_side_addr_of "$IDX")
    LAB_ADDR=$(lab_addr_of "$IDX")
    VETH_HOST=$NETNS_BASE$((2 * IDX))
    VETH_LAB=$NETNS_BASE$((2 * IDX + 1))
    LAB_HOSTNAME=$HOSTNAME_PREFIX$HOST
    BIND_DIRS=$BIND_DIRS_COMMON
    SSH_DIR=$STATE_DIR/ssh
    TLS_DIR=$STATE_DIR/tls
    if [ "$HOST" = host4 ]; then
        PRIVATE_IMAGES=1
        BIND_DIRS="$BIND_DIRS images:$IMAGES"
        LAB_URI="qemu+ssh://root@${LAB_ADDR}/system?keyfile=$SSH_DIR/id_ed25519&no_tty=1"
        LIBSSH2_URI="qemu+libssh2://root@${LAB_ADDR}/system?keyfile=$SSH_DIR/id_ed25519&known_hosts=$SSH_DIR/known_hosts&known_hosts_verify=normal&sshauth=privkey"
        TLS_URI="qemu+tls://${LAB_ADDR}/system?pkipath=$TLS_DIR/client"
        TLS_CLIENT_DN="CN=${LAB_HOSTNAME}-client"
    else
        PRIVATE_IMAGES=0
        LAB_URI="qemu+tcp://${LAB_ADDR}/system"
    fi
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
}

need_tools() {
    for t in ip nsenter unshare mount umount mountpoint hostname flock \
        timeout stat virsh libvirtd virtlogd; do
        command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
    done
    case " $HOSTS " in
        *" host4 "*)
            for t in /usr/sbin/sshd ssh ssh-keygen; do
                command -v "$t" >/dev/null 2>&1 ||
                    die "missing tool: $t (host4 needs openssh-server and openssh-client)"
            done
            command -v virt-ssh-helper >/dev/null 2>&1 || command -v nc >/dev/null 2>&1 ||
                die "missing tool: virt-ssh-helper or nc (the far side of libvirt's ssh transport)"
            command -v openssl >/dev/null 2>&1 ||
                die "missing tool: openssl (host4's TLS certificates; Debian package openssl)"
            ;;
    esac
}

# ------------------------------------------------------------ state helpers
ns_path() { printf '/run/netns/%s' "${1:-$NETNS}"; }
ns_exists() { [ -e "$(ns_path "${1:-}")" ]; }
ns_inode() { stat -L -c %i "$(ns_path)" 2>/dev/null; }
# Alive = exists and is not a zombie (PID 1 may reap orphans only lazily).
pid_alive() {
    [ -n "$1" ] || return 1
    _st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    case ${_st##*) } in
        Z* | X* | x*) return 1 ;;
    esac
    return 0
}

read_pidfile() {   # prints a numeric pid or nothing
    _p=
    if [ -r "$1" ]; then
        IFS= read -r _p <"$1" || true
    fi
    case $_p in
        '' | *[!0-9]*) return 0 ;;
    esac
    printf '%s\n' "$_p"
}

# Holder pid, only if it is alive, a 'sleep' and inside our netns.
holder_pid() {
    _hp=$(read_pidfile "$STATE_DIR/holder.pid")
    pid_alive "$_hp" || return 0
    [ "$(cat "/proc/$_hp/comm" 2>/dev/null)" = sleep ] || return 0
    _ino=$(ns_inode) || return 0
    [ -n "$_ino" ] || return 0
    [ "$(stat -L -c %i "/proc/$_hp/ns/net" 2>/dev/null)" = "$_ino" ] || return 0
    printf '%s\n' "$_hp"
}

# Pid of a daemon (virtlogd/libvirtd/sshd) from its pid file in the lab's
# private /run/libvirt, only if alive and in the holder's mount namespace.
daemon_pid() {   # $1 holder pid, $2 daemon name
    _dp=$(read_pidfile "/proc/$1/root/run/libvirt/$2.pid")
    pid_alive "$_dp" || return 0
    [ "$(stat -L -c %i "/proc/$_dp/ns/mnt" 2>/dev/null)" = \
        "$(stat -L -c %i "/proc/$1/ns/mnt" 2>/dev/null)" ] || return 0
    [ "$(cat "/proc/$_dp/comm" 2>/dev/null)" = "$2" ] || return 0
    printf '%s\n' "$_dp"
}

# Daemons a lab host runs.
daemons() {
    if [ "$HOST" = host4 ]; then echo "virtlogd libvirtd sshd"; else echo "virtlogd libvirtd"; fi
}

# Run a command inside the lab (net + mount + UTS ns of the holder) with a
# clean environment. Never passes fd 9 (the lock) on.
in_lab() {   # $1 holder pid, rest: command
    _h=$1
    shift
    # shellcheck disable=SC2086  # CLEAN_ENV is a fixed list of VAR=value words
    nsenter -t "$_h" -m -u -n -- env -i $CLEAN_ENV "$@" 9>&-
}

# The URI answers from the main host (for host4: through sshd, and over TLS).
lab_responds() {
    timeout 15 virsh -q -c "$LAB_URI" hostname >/dev/null 2>&1 9>&- || return 1
    if [ "$HOST" = host4 ]; then
        timeout 15 virsh -q -c "$TLS_URI" hostname >/dev/null 2>&1 9>&- || return 1
    fi
}

# Every process that lives in the lab: in its netns or in the holder's mount ns.
lab_pids() {   # $1 holder pid (may be empty)
    {
        if ns_exists; then
            ip netns pids "$NETNS" 2>/dev/null || true
        fi
        if [ -n "$1" ] && pid_alive "$1"; then
            _mnt=$(stat -L -c %i "/proc/$1/ns/mnt" 2>/dev/null || true)
            if [ -n "$_mnt" ]; then
                for _d in /proc/[0-9]*; do
                    [ "$(stat -L -c %i "$_d/ns/mnt" 2>/dev/null)" = "$_mnt" ] &&
                        printf '%s\n' "${_d#/proc/}"
                done
            fi
        fi
    } | sort -un
}

# ------------------------------------------------------------------- status
# Prints problems (one per line) and returns 0 only if fully running.
check_running() {
    _ok=0
    if ! ns_exists; then
        echo "netns $NETNS: missing"
        return 1
    fi
    _hp=$(holder_pid)
    if [ -z "$_hp" ]; then
        echo "holder process: not running"
        return 1
    fi
    if ! ip -4 -o addr show dev "$VETH_HOST" 2>/dev/null | grep -q " $HOST_ADDR/"; then
        echo "veth $VETH_HOST: missing or no address $HOST_ADDR"
        _ok=1
    fi
    for _d in $(daemons); do
        if [ -z "$(daemon_pid "$_hp" "$_d")" ]; then
            echo "$_d: not running"
            _ok=1
        fi
    done
    if [ "$_ok" -eq 0 ] && ! lab_responds; then
        echo "libvirtd: not answering on $LAB_URI"
        _ok=1
    fi
    return "$_ok"
}

print_uris() {   # for the hosts in $HOSTS
    for _h in $HOSTS; do
        select_host "$_h"
        if [ "$HOST" = host4 ]; then
            cat <<EOF
lab $HOST URI (from main host):  $LAB_URI
lab $HOST URI (libssh2):          $LIBSSH2_URI
lab $HOST URI (TLS, client cert): $TLS_URI
  $HOST images are PRIVATE (not shared with the main host); ssh key $SSH_DIR/id_ed25519
EOF
        else
            echo "lab $HOST URI (from main host):  $LAB_URI"
        fi
    done
    cat <<EOF
main host URI:                    $MAIN_URI
main host address (from lab):     $MAIN_ADDR
EOF
    for _h in $HOSTS; do
        select_host "$_h"
        [ "$PRIVATE_IMAGES" = 1 ] && continue
        echo "migrate URI main -> $HOST:        tcp://$LAB_ADDR"
    done
    for _h in $HOSTS; do
        select_host "$_h"
        [ "$PRIVATE_IMAGES" = 1 ] && continue
        echo "migrate URI $HOST -> main:        tcp://$MAIN_ADDR"
    done
    for _h in $HOSTS; do
        select_host "$_h"
        [ "$PRIVATE_IMAGES" = 1 ] && continue
        echo "example: virsh migrate --live --unsafe GUEST $LAB_URI tcp://$LAB_ADDR"
        break
    done
}

print_env() {
    echo "KVMLAB_MAIN_URI='$MAIN_URI'"
    echo "KVMLAB_MAIN_ADDR='$MAIN_ADDR'"
    for _h in $HOSTS; do
        select_host "$_h"
        _up=$(printf '%s' "$HOST" | tr '[:lower:]' '[:upper:]')
        echo "KVMLAB_${_up}_URI='$LAB_URI'"
        echo "KVMLAB_${_up}_ADDR='$LAB_ADDR'"
        echo "KVMLAB_${_up}_HOSTNAME='$LAB_HOSTNAME'"
        echo "KVMLAB_${_up}_STATE_DIR='$STATE_DIR'"
        echo "KVMLAB_${_up}_NETNS='$NETNS'"
        echo "KVMLAB_${_up}_SHARED_IMAGES='$((1 - PRIVATE_IMAGES))'"
        if [ "$HOST" = host4 ]; then
            echo "KVMLAB_${_up}_LIBSSH2_URI='$LIBSSH2_URI'"
            echo "KVMLAB_${_up}_SSH_KEY='$SSH_DIR/id_ed25519'"
            echo "KVMLAB_${_up}_SSH_KNOWN_HOSTS='$SSH_DIR/known_hosts'"
            echo "KVMLAB_${_up}_SSH_COMMAND='$SSH_DIR/ssh'"
            echo "KVMLAB_${_up}_TLS_URI='$TLS_URI'"
            echo "KVMLAB_${_up}_TLS_PKIPATH='$TLS_DIR/client'"
            echo "KVMLAB_${_up}_TLS_CLIENT_DN='$TLS_CLIENT_DN'"
        fi
    done
}

host_status() {
    if _problems=$(check_running); then
        _hp=$(holder_pid)
        _line="running: $HOST netns=$NETNS holder=$_hp"
        for _d in $(daemons); do
            _line="$_line $_d=$(daemon_pid "$_hp" "$_d")"
        done
        echo "$_line hostname=$LAB_HOSTNAME state=$STATE_DIR"
        return 0
    fi
    if ns_exists || [ -e "$STATE_DIR/holder.pid" ] ||
        ip link show dev "$VETH_HOST" >/dev/null 2>&1; then
        echo "$HOST not running (partial leftovers present; run '$prog stop $HOST' or '$prog start $HOST'):"
    else
        echo "$HOST not running"
    fi
    [ -n "$_problems" ] && printf '%s\n' "$_problems" | sed 's/^/  /'
    return 3
}

cmd_status() {
    _rc=0
    for _h in $HOSTS; do
        select_host "$_h"
        host_status || _rc=3
    done
    [ "$_rc" -eq 0 ] && print_uris
    return "$_rc"
}

# --------------------------------------------------------------------- stop
kill_wait() {   # $1 signal, $2 seconds, rest: pids; returns 0 if all gone
    _sig=$1
    _secs=$2
    shift 2
    [ $# -gt 0 ] || return 0
    kill "-$_sig" "$@" 2>/dev/null || true
    _i=0
    while [ "$_i" -lt $((_secs * 5)) ]; do
        _alive=0
        for _p in "$@"; do
            pid_alive "$_p" && _alive=1
        done
        [ "$_alive" -eq 0 ] && return 0
        sleep 0.2
        _i=$((_i + 1))
    done
    return 1
}

do_stop() {
    _hp=$(holder_pid)
    # An unverifiable pid file (e.g. the netns is gone) still names a process
    # we may have started: accept it only if it is a 'sleep' that is not in
    # our own mount namespace.
    if [ -z "$_hp" ]; then
        _cand=$(read_pidfile "$STATE_DIR/holder.pid")
        if pid_alive "$_cand" &&
            [ "$(cat "/proc/$_cand/comm" 2>/dev/null)" = sleep ] &&
            [ "$(stat -L -c %i "/proc/$_cand/ns/mnt" 2>/dev/null)" != \
                "$(stat -L -c %i /proc/self/ns/mnt)" ]; then
            _hp=$_cand
        fi
    fi

    if [ -n "$_hp" ]; then
        _lv=$(daemon_pid "$_hp" libvirtd)
        if [ -n "$_lv" ]; then
            # Destroy guests through libvirt so it cleans up (cgroups, logs).
            _doms=$(in_lab "$_hp" timeout 20 virsh -q -c qemu:///system \
                list --name 2>/dev/null || true)
            for _dom in $_doms; do
                log "destroying guest $_dom on $LAB_HOSTNAME"
                in_lab "$_hp" timeout 30 virsh -q -c qemu:///system \
                    destroy "$_dom" >/dev/null 2>&1 || true
            done
            kill_wait TERM 20 "$_lv" || kill_wait KILL 5 "$_lv" || true
        fi
        for _d in virtlogd sshd; do
            _vl=$(daemon_pid "$_hp" "$_d")
            if [ -n "$_vl" ]; then
                kill_wait TERM 10 "$_vl" || kill_wait KILL 5 "$_vl" || true
            fi
        done
    fi

    # Whatever is left in the lab (qemu, dnsmasq, ssh sessions, the holder).
    # shellcheck disable=SC2046  # list of numeric pids
    kill_wait TERM 10 $(lab_pids "$_hp") ||
        kill_wait KILL 5 $(lab_pids "$_hp") || true
    _left=$(lab_pids "$_hp")
    [ -z "$_left" ] ||
        log "WARNING: processes still in the lab: $(printf '%s' "$_left" | tr '\n' ' ')"

    if ns_exists; then
        ip netns del "$NETNS" 2>/dev/null ||
            log "WARNING: could not delete netns $NETNS"
    fi
    # Deleting the netns destroys the lab end and with it the pair (and the
    # pairs to other lab hosts); be sure.
    _i=0
    while ip link show dev "$VETH_HOST" >/dev/null 2>&1 && [ "$_i" -lt 25 ]; do
        sleep 0.2
        _i=$((_i + 1))
    done
    if ip link show dev "$VETH_HOST" >/dev/null 2>&1; then
        ip link del dev "$VETH_HOST" 2>/dev/null || true
    fi
    # 'ip netns add' leaves /run/netns bind-mounted on itself; drop that again
    # when no other netns uses it, so the host looks as before.
    if mountpoint -q /run/netns 2>/dev/null &&
        [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
        umount /run/netns 2>/dev/null || true
    fi
    rm -f "$STATE_DIR/holder.pid" "$STATE_DIR/holder.pid.tmp"
    if [ "$HOST" = host4 ]; then
        untrust_host_key
    fi

    _bad=0
    if ns_exists; then
        log "WARNING: netns $NETNS still exists"
        _bad=1
    fi
    if ip link show dev "$VETH_HOST" >/dev/null 2>&1; then
        log "WARNING: $VETH_HOST still exists"
        _bad=1
    fi
    [ -z "$_left" ] || _bad=1
    return "$_bad"
}

host_stop() {
    if ! ns_exists && [ ! -e "$STATE_DIR/holder.pid" ] &&
        ! ip link show dev "$VETH_HOST" >/dev/null 2>&1; then
        log "$HOST not running"
        return 0
    fi
    do_stop || return 1
    log "stopped $HOST"
}

cmd_stop() {
    _rc=0
    for _h in $HOSTS; do
        select_host "$_h"
        host_stop || _rc=1
    done
    return "$_rc"
}

# -------------------------------------------------------------------- start
# The holder: runs inside the new netns + fresh mount/UTS namespaces, sets up
# the private mounts and hostname, records its pid and becomes 'sleep'.
# All values arrive as positional parameters (no string interpolation).
# shellcheck disable=SC2016  # expanded by the inner sh, not here
HOLDER_SCRIPT='
set -eu
state=$1 lab_hostname=$2
shift 2
# private runtime dir: sockets, pid files, qemu runtime state
mount -t tmpfs -o mode=0755,size=64m kvmlab-run /run/libvirt
# /sys for this netns (so /sys/class/net shows the lab interfaces), keeping
# the cgroup mounts libvirt needs
if mountpoint -q /sys/fs/cgroup; then
    mkdir /run/libvirt/.cgroup-move
    mount --rbind /sys/fs/cgroup /run/libvirt/.cgroup-move
    umount -l /sys
    mount -t sysfs sysfs /sys
    mount --move /run/libvirt/.cgroup-move /sys/fs/cgroup
    rmdir /run/libvirt/.cgroup-move
else
    umount -l /sys
    mount -t sysfs sysfs /sys
fi
for pair in "$@"; do
    mount --bind "$state/${pair%%:*}" "${pair#*:}"
done
mount --bind "$state/hosts" /etc/hosts
hostname "$lab_hostname"
echo $$ >"$state/holder.pid.tmp"
mv "$state/holder.pid.tmp" "$state/holder.pid"
exec sleep infinity
'

uuid_valid() {
    printf '%s' "$1" |
        grep -Eqx '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
}

ensure_host_uuid() {
    _u=
    if [ -r "$STATE_DIR/host_uuid" ]; then IFS= read -r _u <"$STATE_DIR/host_uuid" || true; fi
    if ! uuid_valid "$_u"; then
        _u=$(cat /proc/sys/kernel/random/uuid)
        uuid_valid "$_u" || die "cannot generate a uuid"
        printf '%s\n' "$_u" >"$STATE_DIR/host_uuid"
        log "generated host_uuid $_u for $HOST"
    fi
    HOST_UUID=$_u
}

# Mirror owner and mode of the host path onto the private dir.
mirror_perms() {   # $1 private dir, $2 host path
    if [ -d "$2" ]; then
        chown "$(stat -c %u:%g "$2")" "$1"
        chmod "$(stat -c %a "$2")" "$1"
    fi
}

prepare_state() {
    mkdir -p "$STATE_DIR"
    chmod 0700 "$STATE_DIR"
    ensure_host_uuid

    for _pair in $BIND_DIRS; do
        _sub=${_pair%%:*}
        _tgt=${_pair#*:}
        [ -d "$_tgt" ] || die "host path $_tgt missing (libvirt installed?)"
        [ "$_sub" = etc ] && continue
        mkdir -p "$STATE_DIR/$_sub"
        mirror_perms "$STATE_DIR/$_sub" "$_tgt"
    done

    # Fresh copy of the host's libvirt config on every start, minus anything
    # that would make the lab host a clone of the main host: persistent domain
    # definitions (same names/UUIDs) and autostart links. A host with private
    # images gets no storage pools of the main host either (their paths are
    # the main host's): it gets its own "default" pool after the start.
    rm -rf "${STATE_DIR:?}/etc.new"
    cp -a /etc/libvirt "$STATE_DIR/etc.new"
    find "$STATE_DIR/etc.new/qemu" -maxdepth 1 -type f -name '*.xml' -delete 2>/dev/null || true
    find "$STATE_DIR/etc.new" -path '*/autostart/*' -delete 2>/dev/null || true
    if [ "$PRIVATE_IMAGES" = 1 ]; then
        find "$STATE_DIR/etc.new/storage" -maxdepth 1 -type f -name '*.xml' -delete 2>/dev/null || true
    fi

    _conf=$STATE_DIR/etc.new/libvirtd.conf
    touch "$_conf"
    sed -i -E '/^[[:space:]]*(listen_tls|listen_tcp|listen_addr|auth_tcp|auth_tls|host_uuid|host_uuid_source|tcp_port|tls_port|key_file|cert_file|ca_file|crl_file|tls_no_verify_certificate|tls_allowed_dn_list|tls_priority)[[:space:]]*=/d' "$_conf"
    if [ "$PRIVATE_IMAGES" = 1 ]; then
        cat >>"$_conf" <<EOF

# ---- kvmops lab $HOST (written by tests/lab/lab.sh) ----
# No TCP listener: clients come in through sshd (qemu+ssh://) or over TLS.
# TLS: authenticated by the client certificate (signed by the lab's own CA,
# made on every start, its DN the only one allowed), on the lab end of a
# private veth pair inside the lab network namespace ($NETNS) only. The
# keys are throwaway lab keys: never copy them to a real host.
listen_tcp = 0
listen_tls = 1
tls_port = "16514"
listen_addr = "$LAB_ADDR"
auth_tls = "none"
key_file = "$TLS_DIR/server/serverkey.pem"
cert_file = "$TLS_DIR/server/servercert.pem"
ca_file = "$TLS_DIR/server/cacert.pem"
tls_no_verify_certificate = 0
tls_allowed_dn_list = ["$TLS_CLIENT_DN"]
host_uuid = "$HOST_UUID"
EOF
    else
        cat >>"$_conf" <<EOF

# ---- kvmops lab $HOST (written by tests/lab/lab.sh) ----
# SECURITY: unauthenticated, unencrypted TCP listener (auth_tcp = none).
# Acceptable ONLY because listen_addr is the lab end of a private veth pair
# inside the lab network namespace ($NETNS), reachable from this machine
# only. Never copy these settings to a real host.
listen_tls = 0
listen_tcp = 1
tcp_port = "16509"
listen_addr = "$LAB_ADDR"
auth_tcp = "none"
host_uuid = "$HOST_UUID"
EOF
    fi

    _qconf=$STATE_DIR/etc.new/qemu.conf
    touch "$_qconf"
    sed -i -E '/^[[:space:]]*(migration_address|migration_host)[[:space:]]*=/d' "$_qconf"
    cat >>"$_qconf" <<EOF

# ---- kvmops lab $HOST (written by tests/lab/lab.sh) ----
# Incoming migrations listen on / are advertised with the lab address (the
# lab hostname does not resolve on the main host).
migration_address = "$LAB_ADDR"
migration_host = "$LAB_ADDR"
EOF

    rm -rf "${STATE_DIR:?}/etc"
    mv "$STATE_DIR/etc.new" "$STATE_DIR/etc"

    # Private /etc/hosts: host's one plus the lab names.
    {
        cat /etc/hosts 2>/dev/null || true
        printf '\n# kvmops lab\n%s %s\n%s %s\n' \
            "$LAB_ADDR" "$LAB_HOSTNAME" "$MAIN_ADDR" "$(hostname)"
    } >"$STATE_DIR/hosts"
    chmod 0644 "$STATE_DIR/hosts"

    if [ "$HOST" = host4 ]; then
        prepare_ssh
        prepare_tls
    fi
}

# TLS for host4: a throwaway CA, a server certificate (CN the lab hostname,
# subjectAltName its lab address and hostname) and a client certificate (the
# one DN libvirtd allows), new on every start. Keys 0600 in the state dir.
# tls/server is what host4's libvirtd reads; tls/client is the pkipath= of
# the TLS URI (the file names libvirt's client looks for there).
tls_key() {   # $1 key file
    (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null 9>&-) ||
        die "openssl cannot make a key ($1)"
    chmod 0600 "$1"
}
tls_sign() {   # $1 key, $2 subject, $3 extensions, $4 certificate
    printf '%s\n' "$3" >"$TLS_DIR/ca/ext.cnf"
    openssl req -new -key "$1" -subj "$2" 2>/dev/null 9>&- |
        openssl x509 -req -CA "$TLS_DIR/ca/cacert.pem" -CAkey "$TLS_DIR/ca/cakey.pem" \
            -CAserial "$TLS_DIR/ca/serial" -CAcreateserial -days 7 \
            -extfile "$TLS_DIR/ca/ext.cnf" -out "$4" 2>/dev/null 9>&- ||
        die "openssl cannot sign $4"
    chmod 0644 "$4"
}
prepare_tls() {
    rm -rf "${TLS_DIR:?}"
    mkdir -m 0700 "$TLS_DIR" "$TLS_DIR/ca" "$TLS_DIR/server" "$TLS_DIR/client"
    tls_key "$TLS_DIR/ca/cakey.pem"
    openssl req -x509 -new -key "$TLS_DIR/ca/cakey.pem" -subj "/CN=${LAB_HOSTNAME} lab CA" -days 7 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$TLS_DIR/ca/cacert.pem" 2>/dev/null 9>&- || die "openssl cannot make the lab CA"
    tls_key "$TLS_DIR/server/serverkey.pem"
    tls_sign "$TLS_DIR/server/serverkey.pem" "/CN=$LAB_HOSTNAME" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$LAB_ADDR,DNS:$LAB_HOSTNAME" "$TLS_DIR/server/servercert.pem"
    tls_key "$TLS_DIR/client/clientkey.pem"
    tls_sign "$TLS_DIR/client/clientkey.pem" "/${TLS_CLIENT_DN}" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth" "$TLS_DIR/client/clientcert.pem"
    cp "$TLS_DIR/ca/cacert.pem" "$TLS_DIR/server/cacert.pem"
    cp "$TLS_DIR/ca/cacert.pem" "$TLS_DIR/client/cacert.pem"
    rm -f "$TLS_DIR/ca/ext.cnf"
}

# sshd for host4: new host and client keys on every start, root login by key
# only, from the main host's end of the veth only, no forwarding, no pty.
prepare_ssh() {
    rm -rf "${SSH_DIR:?}"
    mkdir -m 0700 "$SSH_DIR"
    ssh-keygen -q -t ed25519 -N '' -C "kvmlab-$HOST-host" -f "$SSH_DIR/ssh_host_ed25519_key" 9>&-
    ssh-keygen -q -t ed25519 -N '' -C "kvmlab-$HOST-client" -f "$SSH_DIR/id_ed25519" 9>&-
    printf 'restrict,from="%s" %s\n' "$HOST_ADDR" "$(cat "$SSH_DIR/id_ed25519.pub")" \
        >"$SSH_DIR/authorized_keys"
    chmod 0600 "$SSH_DIR/authorized_keys"
    # known_hosts: "<addr> <type> <key>" (drop the comment)
    printf '%s %s\n' "$LAB_ADDR" "$(cut -d' ' -f1,2 "$SSH_DIR/ssh_host_ed25519_key.pub")" \
        >"$SSH_DIR/known_hosts"
    cat >"$SSH_DIR/sshd_config" <<EOF
# kvmops lab $HOST (written by tests/lab/lab.sh)
ListenAddress $LAB_ADDR:22
HostKey $SSH_DIR/ssh_host_ed25519_key
PidFile /run/libvirt/sshd.pid
AuthorizedKeysFile $SSH_DIR/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
AllowTcpForwarding no
AllowAgentForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTunnel no
PermitUserEnvironment no
EOF
    # For commands on host4 (and libvirt's command= URI parameter): real ssh,
    # verifying the host key against the lab's own known_hosts only.
    cat >"$SSH_DIR/ssh" <<EOF
#!/bin/sh
exec ssh -F none -o UserKnownHostsFile=$SSH_DIR/known_hosts -o GlobalKnownHostsFile=/dev/null \\
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes \\
    -o IdentityFile=$SSH_DIR/id_ed25519 "\$@"
EOF
    chmod 0700 "$SSH_DIR/ssh"
}

# root's known_hosts on the main host: the lab writes (on start) and removes (on stop) the one line for the
# lab host's address, so the plain qemu+ssh:// URI verifies the host key like any other host's.
root_known_hosts() { printf '%s/.ssh/known_hosts' "$(getent passwd root | cut -d: -f6)"; }
# Lab instances with other state dirs do not share the lock on fd 9: edits
# of known_hosts take their own lock (ssh-keygen -R rewrites the file, so an
# append by another instance in between would be lost).
known_hosts_edit() {   # $1 add|remove
    _kh=$(root_known_hosts)
    [ -d "${_kh%/*}" ] || mkdir -m 0700 "${_kh%/*}"
    (
        flock -w 60 8 || exit 1
        if [ -f "$_kh" ]; then ssh-keygen -q -R "$LAB_ADDR" -f "$_kh" >/dev/null 2>&1 || true; fi
        rm -f "$_kh.old"
        if [ "$1" = add ]; then
            cat "$SSH_DIR/known_hosts" >>"$_kh"
            chmod 0600 "$_kh"
        fi
    ) 8>"${_kh%/*}/.kvmlab-known_hosts.lock" 9>&-
}
trust_host_key() { known_hosts_edit add || die "cannot add host4's key to $(root_known_hosts)"; }
untrust_host_key() { known_hosts_edit remove || log "WARNING: cannot remove host4's key from $(root_known_hosts)"; }

# The main host reaches lab host i at NET.(4i+2) over its veth pair; every lab
# host reaches the main host at NET.1 (host2's main end; a /32 on the main
# end of the others' pairs too).
setup_network() {
    for _a in "$LAB_ADDR" "$HOST_ADDR"; do
        if ip -4 route show to match "$_a" 2>/dev/null | grep -v '^default' | grep -q .; then
            die "$_a overlaps an existing route on this host; set KVMLAB_NET"
        fi
    done
    ip netns add "$NETNS"
    # ARP answers for any local address on any interface: the lab hosts
    # reach each other's lab address over unnumbered pairs.
    nsenter --net="$(ns_path)" sh -c 'echo 0 >/proc/sys/net/ipv4/conf/all/arp_ignore' 9>&-
    ip link add "$VETH_HOST" type veth peer name "$VETH_LAB"
    ip link set "$VETH_LAB" netns "$NETNS"
    ip addr add "$HOST_ADDR/$PREFIXLEN" dev "$VETH_HOST"
    if [ "$HOST_ADDR" != "$MAIN_ADDR" ]; then
        ip addr add "$MAIN_ADDR/32" dev "$VETH_HOST"
    fi
    ip link set "$VETH_HOST" up
    ip -n "$NETNS" link set lo up
    ip -n "$NETNS" addr add "$LAB_ADDR/$PREFIXLEN" dev "$VETH_LAB"
    ip -n "$NETNS" link set "$VETH_LAB" up
    if [ "$HOST_ADDR" != "$MAIN_ADDR" ]; then
        ip -n "$NETNS" route add "$MAIN_ADDR/32" dev "$VETH_LAB" src "$LAB_ADDR"
    fi
}

# An unnumbered veth pair between every two running lab hosts (named
# "peer-<other host>" in each netns) with a /32 route to the other's lab
# address, created when missing. Removing a netns removes its pairs.
link_peers() {
    for _a in $ALL_HOSTS; do
        for _b in $ALL_HOSTS; do
            [ "$(host_index "$_a")" -lt "$(host_index "$_b")" ] || continue
            _na=$(netns_of "$(host_index "$_a")")
            _nb=$(netns_of "$(host_index "$_b")")
            if ! ns_exists "$_na" || ! ns_exists "$_nb"; then
                continue
            fi
            ip -n "$_na" link show dev "peer-$_b" >/dev/null 2>&1 && continue
            _aa=$(lab_addr_of "$(host_index "$_a")")
            _ab=$(lab_addr_of "$(host_index "$_b")")
            ip -n "$_nb" link del dev "peer-$_a" 2>/dev/null || true
            ip link add "kvltp$$" type veth peer name "kvltq$$"
            ip link set "kvltp$$" netns "$_na"
            ip link set "kvltq$$" netns "$_nb"
            ip -n "$_na" link set "kvltp$$" name "peer-$_b"
            ip -n "$_nb" link set "kvltq$$" name "peer-$_a"
            ip -n "$_na" link set "peer-$_b" up
            ip -n "$_nb" link set "peer-$_a" up
            ip -n "$_na" route replace "$_ab/32" dev "peer-$_b" src "$_aa"
            ip -n "$_nb" route replace "$_aa/32" dev "peer-$_a" src "$_ab"
        done
    done
}

start_holder() {
    rm -f "$STATE_DIR/holder.pid" "$STATE_DIR/holder.pid.tmp"
    # shellcheck disable=SC2086  # BIND_DIRS is a fixed list of words
    setsid nsenter --net="$(ns_path)" -- \
        unshare --mount --uts --propagation private -- \
        sh -c "$HOLDER_SCRIPT" kvmlab-holder "$STATE_DIR" "$LAB_HOSTNAME" \
        $BIND_DIRS \
        </dev/null >"$STATE_DIR/holder.log" 2>&1 9>&- &
    _i=0
    while [ "$_i" -lt 50 ]; do
        _hp=$(holder_pid)
        [ -n "$_hp" ] && return 0
        sleep 0.2
        _i=$((_i + 1))
    done
    die "holder did not come up; see $STATE_DIR/holder.log: $(cat "$STATE_DIR/holder.log" 2>/dev/null)"
}

start_daemons() {   # $1 holder pid
    in_lab "$1" virtlogd -d -p /run/libvirt/virtlogd.pid ||
        die "virtlogd failed to start"
    # --listen: the TCP listener (host2, host3) or the TLS one (host4)
    in_lab "$1" libvirtd -d --listen -p /run/libvirt/libvirtd.pid ||
        die "libvirtd failed to start; see $STATE_DIR/log/libvirtd.log"
    if [ "$HOST" = host4 ]; then
        # privilege separation dir (the host's /run is shared with the lab)
        mkdir -p /run/sshd
        chmod 0755 /run/sshd
        in_lab "$1" /usr/sbin/sshd -f "$SSH_DIR/sshd_config" -E "$STATE_DIR/log/sshd.log" ||
            die "sshd failed to start; see $STATE_DIR/log/sshd.log"
        trust_host_key
    fi
    _i=0
    while [ "$_i" -lt "$TIMEOUT" ]; do
        if [ -n "$(daemon_pid "$1" libvirtd)" ] && lab_responds; then
            return 0
        fi
        sleep 1
        _i=$((_i + 1))
    done
    die "libvirtd not answering on $LAB_URI after ${TIMEOUT}s; see $STATE_DIR/log/libvirtd.log"
}

# host4: a "default" dir pool on its private images dir.
define_pools() {   # $1 holder pid
    [ "$PRIVATE_IMAGES" = 1 ] || return 0
    if ! in_lab "$1" virsh -q -c qemu:///system pool-info default >/dev/null 2>&1; then
        in_lab "$1" virsh -q -c qemu:///system pool-define-as default dir --target "$IMAGES" >/dev/null ||
            die "cannot define the default pool on $HOST"
    fi
    in_lab "$1" virsh -q -c qemu:///system pool-start default >/dev/null 2>&1 || true
}

on_start_fail() {
    _rc=$?
    trap - EXIT
    if [ "$_rc" -ne 0 ]; then
        if [ "$KEEP_ON_FAILURE" = 1 ]; then
            log "start of $HOST failed (rc=$_rc); leaving the lab as is (KVMLAB_KEEP_ON_FAILURE=1)"
        else
            log "start of $HOST failed (rc=$_rc); cleaning up $HOST"
            do_stop || true
        fi
    fi
    exit "$_rc"
}

host_start() {
    if check_running >/dev/null; then
        log "$HOST already running"
        return 0
    fi
    if ns_exists || [ -e "$STATE_DIR/holder.pid" ] ||
        ip link show dev "$VETH_HOST" >/dev/null 2>&1; then
        log "cleaning up leftovers of a previous run of $HOST"
        do_stop || die "could not clean up the previous $HOST; see warnings above"
    fi
    trap on_start_fail EXIT
    prepare_state
    setup_network
    start_holder
    _hp=$(holder_pid)
    start_daemons "$_hp"
    define_pools "$_hp"
    trap - EXIT
    log "started $LAB_HOSTNAME (host_uuid $HOST_UUID) in netns $NETNS"
}

cmd_start() {
    for _h in $HOSTS; do
        select_host "$_h"
        host_start
    done
    link_peers
    print_uris
}

cmd_purge() {
    cmd_stop || die "stop failed; state dirs kept"
    for _h in $HOSTS; do
        select_host "$_h"
        rm -rf "${STATE_DIR:?}"
        log "removed $STATE_DIR"
    done
}

# --------------------------------------------------------------------- main
[ $# -ge 1 ] || usage
case $1 in
    start | stop | status | purge | uris | env) ;;
    *) usage ;;
esac
CMD=$1
shift
validate_config
HOSTS=
for _h in "$@"; do
    host_index "$_h" >/dev/null || usage
    case " $HOSTS " in
        *" $_h "*) ;;
        *) HOSTS="$HOSTS $_h" ;;
    esac
done
[ -n "$HOSTS" ] || HOSTS=$ALL_HOSTS
HOSTS=${HOSTS# }
if [ "$CMD" = uris ]; then
    print_uris
    exit 0
fi
if [ "$CMD" = env ]; then
    print_env
    exit 0
fi
need_root
need_tools

# Serialise concurrent invocations. fd 9 is closed for everything we spawn.
mkdir -p "$STATE_BASE"
exec 9>"$STATE_BASE/lock"
flock -w 240 9 || die "another $prog is running (lock $STATE_BASE/lock)"

case $CMD in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    purge) cmd_purge ;;
esac
