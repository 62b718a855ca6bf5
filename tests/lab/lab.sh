#!/usr/bin/env bash
# tests/lab/lab.sh - two-host libvirt lab for migration tests.
#
# Builds a second libvirt "host" (host2) on this machine:
#   * network namespace  $KVMLAB_NETNS  joined to the main host by a veth pair
#       main side  $KVMLAB_VETH_HOST  $KVMLAB_HOST_ADDR/$KVMLAB_PREFIXLEN
#       lab side   $KVMLAB_VETH_LAB   $KVMLAB_LAB_ADDR/$KVMLAB_PREFIXLEN (inside the netns)
#   * private mount + UTS namespaces, kept alive by a "holder" process
#     (sleep infinity) whose pid is recorded in $KVMLAB_STATE_DIR/holder.pid
#   * private /run/libvirt (tmpfs), /etc/libvirt, /var/lib/libvirt/qemu,
#     /var/log/libvirt, /var/cache/libvirt, /etc/hosts and a /sys showing the
#     lab netns; /var/lib/libvirt/images stays SHARED (the "shared storage")
#   * its own hostname and a fixed host_uuid (generated once, kept in the
#     state dir), its own virtlogd + libvirtd (TCP listener on the lab address)
#
# Usage: lab.sh start|stop|status|purge|uris
#   exit codes: 0 ok / running, 1 error, 2 usage, 3 not running (status)
# See tests/lab/README.md.

set -eu

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

NETNS=${KVMLAB_NETNS:-kvmlab}
STATE_DIR=${KVMLAB_STATE_DIR:-/var/lib/kvmops-lab/host2}
HOST_ADDR=${KVMLAB_HOST_ADDR:-10.254.77.1}
LAB_ADDR=${KVMLAB_LAB_ADDR:-10.254.77.2}
PREFIXLEN=${KVMLAB_PREFIXLEN:-30}
VETH_HOST=${KVMLAB_VETH_HOST:-kvmlab0}
VETH_LAB=${KVMLAB_VETH_LAB:-kvmlab1}
LAB_HOSTNAME=${KVMLAB_HOSTNAME:-kvmlab-host2}
TIMEOUT=${KVMLAB_TIMEOUT:-60}
KEEP_ON_FAILURE=${KVMLAB_KEEP_ON_FAILURE:-0}

LAB_URI="qemu+tcp://${LAB_ADDR}/system"
MAIN_URI="qemu:///system"
# Private directories bind-mounted over the host paths inside the lab
# mount namespace: "<dir under STATE_DIR>:<host path>".
BIND_DIRS="etc:/etc/libvirt lib-qemu:/var/lib/libvirt/qemu log:/var/log/libvirt cache:/var/cache/libvirt"
# Environment for everything started inside the lab (nothing leaks from the
# caller, e.g. LIBVIRT_DEFAULT_URI).
CLEAN_ENV="PATH=$PATH HOME=/root LANG=C.UTF-8"

prog=${0##*/}
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $prog start|stop|status|purge|uris
  start   build the lab (idempotent; repairs/cleans a half-started lab first)
  stop    tear everything down: guests on host2, daemons, namespaces, veth
  status  exit 0 if the lab is fully running, 3 if not (partial == not)
  purge   stop, then delete the state dir (incl. host_uuid and logs)
  uris    print the connection URIs
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
valid_ipv4() {
    case $1 in
        *[!0-9.]* | *..* | .* | *.) return 1 ;;
    esac
    # shellcheck disable=SC2046  # word splitting on '.' is intended
    set -- $(printf '%s' "$1" | tr '.' ' ')
    [ $# -eq 4 ] || return 1
    for o in "$@"; do
        [ "$o" -le 255 ] 2>/dev/null || return 1
    done
}
valid_hostname() {
    case $1 in
        '' | -* | *[!A-Za-z0-9.-]*) return 1 ;;
    esac
    [ "${#1}" -le 63 ]
}

validate_config() {
    valid_name "$NETNS" || die "bad KVMLAB_NETNS: $NETNS"
    valid_name "$VETH_HOST" || die "bad KVMLAB_VETH_HOST: $VETH_HOST"
    valid_name "$VETH_LAB" || die "bad KVMLAB_VETH_LAB: $VETH_LAB"
    valid_ipv4 "$HOST_ADDR" || die "bad KVMLAB_HOST_ADDR: $HOST_ADDR"
    valid_ipv4 "$LAB_ADDR" || die "bad KVMLAB_LAB_ADDR: $LAB_ADDR"
    valid_hostname "$LAB_HOSTNAME" || die "bad KVMLAB_HOSTNAME: $LAB_HOSTNAME"
    case $PREFIXLEN in
        '' | *[!0-9]*) die "bad KVMLAB_PREFIXLEN: $PREFIXLEN" ;;
    esac
    { [ "$PREFIXLEN" -ge 8 ] && [ "$PREFIXLEN" -le 30 ]; } ||
        die "bad KVMLAB_PREFIXLEN: $PREFIXLEN"
    case $TIMEOUT in
        '' | *[!0-9]*) die "bad KVMLAB_TIMEOUT: $TIMEOUT" ;;
    esac
    case $STATE_DIR in
        /?*) ;;
        *) die "KVMLAB_STATE_DIR must be an absolute path: $STATE_DIR" ;;
    esac
    case $STATE_DIR in
        *[!A-Za-z0-9_./-]* | */../* | */..) die "bad KVMLAB_STATE_DIR: $STATE_DIR" ;;
    esac
    [ "$HOST_ADDR" != "$LAB_ADDR" ] || die "host and lab address must differ"
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
}

need_tools() {
    for t in ip nsenter unshare mount umount mountpoint hostname flock \
        timeout stat virsh libvirtd virtlogd; do
        command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
    done
}

# ------------------------------------------------------------ state helpers
ns_path() { printf '/run/netns/%s' "$NETNS"; }
ns_exists() { [ -e "$(ns_path)" ]; }
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

# Pid of a daemon (virtlogd/libvirtd) from its pid file in the lab's private
# /run/libvirt, only if alive and in the holder's mount namespace.
daemon_pid() {   # $1 holder pid, $2 daemon name
    _dp=$(read_pidfile "/proc/$1/root/run/libvirt/$2.pid")
    pid_alive "$_dp" || return 0
    [ "$(stat -L -c %i "/proc/$_dp/ns/mnt" 2>/dev/null)" = \
        "$(stat -L -c %i "/proc/$1/ns/mnt" 2>/dev/null)" ] || return 0
    [ "$(cat "/proc/$_dp/comm" 2>/dev/null)" = "$2" ] || return 0
    printf '%s\n' "$_dp"
}

# Run a command inside the lab (net + mount + UTS ns of the holder) with a
# clean environment. Never passes fd 9 (the lock) on.
in_lab() {   # $1 holder pid, rest: command
    _h=$1
    shift
    # shellcheck disable=SC2086  # CLEAN_ENV is a fixed list of VAR=value words
    nsenter -t "$_h" -m -u -n -- env -i $CLEAN_ENV "$@" 9>&-
}

lab_responds() {
    timeout 15 virsh -q -c "$LAB_URI" hostname >/dev/null 2>&1 9>&-
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
    for _d in virtlogd libvirtd; do
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

print_uris() {
    cat <<EOF
lab host2 URI (from main host):  $LAB_URI
main host URI:                    $MAIN_URI
main host address (from lab):     $HOST_ADDR
migrate URI main -> host2:        tcp://$LAB_ADDR
migrate URI host2 -> main:        tcp://$HOST_ADDR
example: virsh migrate --live --unsafe GUEST $LAB_URI tcp://$LAB_ADDR
EOF
}

cmd_status() {
    if _problems=$(check_running); then
        _hp=$(holder_pid)
        echo "running: netns=$NETNS holder=$_hp" \
            "virtlogd=$(daemon_pid "$_hp" virtlogd)" \
            "libvirtd=$(daemon_pid "$_hp" libvirtd)" \
            "hostname=$LAB_HOSTNAME state=$STATE_DIR"
        print_uris
        return 0
    fi
    if ns_exists || [ -e "$STATE_DIR/holder.pid" ] ||
        ip link show dev "$VETH_HOST" >/dev/null 2>&1; then
        echo "not running (partial leftovers present; run '$prog stop' or '$prog start'):"
    else
        echo "not running"
    fi
    [ -n "$_problems" ] && printf '%s\n' "$_problems" | sed 's/^/  /'
    return 3
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
        _vl=$(daemon_pid "$_hp" virtlogd)
        if [ -n "$_vl" ]; then
            kill_wait TERM 10 "$_vl" || kill_wait KILL 5 "$_vl" || true
        fi
    fi

    # Whatever is left in the lab (qemu, dnsmasq, stray shells, the holder).
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
    # Deleting the netns destroys the lab end and with it the pair; be sure.
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

cmd_stop() {
    if ! ns_exists && [ ! -e "$STATE_DIR/holder.pid" ] &&
        ! ip link show dev "$VETH_HOST" >/dev/null 2>&1; then
        log "not running"
        return 0
    fi
    do_stop
    log "stopped"
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
        log "generated host_uuid $_u"
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
    # that would make host2 a clone of the main host: persistent domain
    # definitions (same names/UUIDs) and autostart links.
    rm -rf "${STATE_DIR:?}/etc.new"
    cp -a /etc/libvirt "$STATE_DIR/etc.new"
    find "$STATE_DIR/etc.new/qemu" -maxdepth 1 -type f -name '*.xml' -delete 2>/dev/null || true
    find "$STATE_DIR/etc.new" -path '*/autostart/*' -delete 2>/dev/null || true

    _conf=$STATE_DIR/etc.new/libvirtd.conf
    touch "$_conf"
    sed -i -E '/^[[:space:]]*(listen_tls|listen_tcp|listen_addr|auth_tcp|host_uuid|host_uuid_source|tcp_port)[[:space:]]*=/d' "$_conf"
    cat >>"$_conf" <<EOF

# ---- kvmops lab host2 (written by tests/lab/lab.sh) ----
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

    _qconf=$STATE_DIR/etc.new/qemu.conf
    touch "$_qconf"
    sed -i -E '/^[[:space:]]*(migration_address|migration_host)[[:space:]]*=/d' "$_qconf"
    cat >>"$_qconf" <<EOF

# ---- kvmops lab host2 (written by tests/lab/lab.sh) ----
# Incoming migrations listen on / are advertised with the lab address (the
# lab hostname does not resolve on the main host).
migration_address = "$LAB_ADDR"
migration_host = "$LAB_ADDR"
EOF

    rm -rf "${STATE_DIR:?}/etc"
    mv "$STATE_DIR/etc.new" "$STATE_DIR/etc"

    # Private /etc/hosts: host's one plus both lab names.
    {
        cat /etc/hosts 2>/dev/null || true
        printf '\n# kvmops lab\n%s %s\n%s %s\n' \
            "$LAB_ADDR" "$LAB_HOSTNAME" "$HOST_ADDR" "$(hostname)"
    } >"$STATE_DIR/hosts"
    chmod 0644 "$STATE_DIR/hosts"
}

setup_network() {
    for _a in "$LAB_ADDR" "$HOST_ADDR"; do
        if ip -4 route show to match "$_a" 2>/dev/null | grep -v '^default' | grep -q .; then
            die "$_a overlaps an existing route on this host; set KVMLAB_HOST_ADDR/KVMLAB_LAB_ADDR"
        fi
    done
    ip netns add "$NETNS"
    ip link add "$VETH_HOST" type veth peer name "$VETH_LAB"
    ip link set "$VETH_LAB" netns "$NETNS"
    ip addr add "$HOST_ADDR/$PREFIXLEN" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    ip -n "$NETNS" link set lo up
    ip -n "$NETNS" addr add "$LAB_ADDR/$PREFIXLEN" dev "$VETH_LAB"
    ip -n "$NETNS" link set "$VETH_LAB" up
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
    in_lab "$1" libvirtd -d --listen -p /run/libvirt/libvirtd.pid ||
        die "libvirtd failed to start; see $STATE_DIR/log/libvirtd.log"
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

on_start_fail() {
    _rc=$?
    trap - EXIT
    if [ "$_rc" -ne 0 ]; then
        if [ "$KEEP_ON_FAILURE" = 1 ]; then
            log "start failed (rc=$_rc); leaving the lab as is (KVMLAB_KEEP_ON_FAILURE=1)"
        else
            log "start failed (rc=$_rc); cleaning up"
            do_stop || true
        fi
    fi
    exit "$_rc"
}

cmd_start() {
    if check_running >/dev/null; then
        log "already running"
        print_uris
        return 0
    fi
    if ns_exists || [ -e "$STATE_DIR/holder.pid" ] ||
        ip link show dev "$VETH_HOST" >/dev/null 2>&1; then
        log "cleaning up leftovers of a previous run"
        do_stop || die "could not clean up the previous lab; see warnings above"
    fi
    trap on_start_fail EXIT
    prepare_state
    setup_network
    start_holder
    _hp=$(holder_pid)
    start_daemons "$_hp"
    trap - EXIT
    log "started $LAB_HOSTNAME (host_uuid $HOST_UUID) in netns $NETNS"
    print_uris
}

cmd_purge() {
    cmd_stop
    case $STATE_DIR in
        / | /var | /var/lib | /etc | /usr | /run) die "refusing to remove $STATE_DIR" ;;
    esac
    rm -rf "${STATE_DIR:?}"
    log "removed $STATE_DIR"
}

# --------------------------------------------------------------------- main
[ $# -eq 1 ] || usage
case $1 in
    start | stop | status | purge | uris) ;;
    *) usage ;;
esac
validate_config
if [ "$1" = uris ]; then
    print_uris
    exit 0
fi
need_root
need_tools

# Serialise concurrent invocations. fd 9 is closed for everything we spawn.
mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/lock"
flock -w 120 9 || die "another $prog is running (lock $STATE_DIR/lock)"

case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    purge) cmd_purge ;;
esac
